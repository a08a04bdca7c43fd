// ARRCOC_API marks what libarrcoc_core exports: the API declared in these headers. The library is
// built with hidden visibility (CMakeLists.txt), so its internals - the backends, kernels and
// helpers - stay out of the symbol table of a program that embeds it, and cannot clash with its own.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define ARRCOC_API __attribute__((visibility("default")))
#else
#define ARRCOC_API
#endif
