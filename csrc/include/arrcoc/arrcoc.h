// Umbrella header of the arrcoc C++ API. Includes no CUDA headers.
#pragma once

#include "arrcoc/allocate.h"
#include "arrcoc/cascade.h"
#include "arrcoc/channels.h"
#include "arrcoc/frame.h"
#include "arrcoc/pipeline.h"
#include "arrcoc/runtime.h"
#include "arrcoc/semantic.h"
#include "arrcoc/status.h"
#include "arrcoc/texture.h"
