// The allocate stage's glue: PyTokenAllocator and its Python class TokenAllocator
// (bind_allocate), the balance-weight dict conversions and default_balance_weights.
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "bind_common.h"
#include "cascade_bindings.h"
#include "device_array.h"
#include "texture_bindings.h"

namespace arrcoc::pyglue {

namespace {

// ------------------------------------------------------------------ TokenAllocator

using PyBuilderRef = PyTextureBuilder&;

BalanceWeights weights_from_dict(const py::dict& d) {
  BalanceWeights w;
  auto copy = [&](const char* key, float* dst, size_t n) {
    auto a = d[key].cast<py::array_t<float, py::array::c_style | py::array::forcecast>>();
    if (static_cast<size_t>(a.size()) != n)
      throw py::value_error(std::string("weights: ") + key + " has " + std::to_string(a.size()) + " values; expected " +
                            std::to_string(n));
    std::memcpy(dst, a.data(), n * sizeof(float));
  };
  copy("W1", w.W1, 384);
  copy("b1", w.b1, 128);
  copy("ln_gamma", w.ln_gamma, 128);
  copy("ln_beta", w.ln_beta, 128);
  copy("W2", w.W2, 64 * 128);
  copy("b2", w.b2, 64);
  copy("ln2_gamma", w.ln2_gamma, 64);
  copy("ln2_beta", w.ln2_beta, 64);
  copy("W3", w.W3, 64);
  copy("b3", &w.b3, 1);
  copy("lambda_logits", w.lambda_logits, 3);
  copy("mix", w.mix, 3);
  copy("ctx_W1", w.ctx_W1, kContextHidden * kContextInputs);
  copy("ctx_b1", w.ctx_b1, kContextHidden);
  copy("ctx_W2", w.ctx_W2, 3 * kContextHidden);
  copy("ctx_b2", w.ctx_b2, 3);
  return w;
}

py::dict weights_to_dict(const BalanceWeights& w) {
  py::dict d;
  auto put = [&](const char* key, const float* src, std::vector<py::ssize_t> shape) {
    py::array_t<float> a(shape);
    std::memcpy(a.mutable_data(), src, a.size() * sizeof(float));
    d[key] = a;
  };
  put("W1", w.W1, {128, 3});
  put("b1", w.b1, {128});
  put("ln_gamma", w.ln_gamma, {128});
  put("ln_beta", w.ln_beta, {128});
  put("W2", w.W2, {64, 128});
  put("b2", w.b2, {64});
  put("ln2_gamma", w.ln2_gamma, {64});
  put("ln2_beta", w.ln2_beta, {64});
  put("W3", w.W3, {1, 64});
  put("b3", &w.b3, {1});
  put("lambda_logits", w.lambda_logits, {3});
  put("mix", w.mix, {3});
  put("ctx_W1", w.ctx_W1, {kContextHidden, kContextInputs});
  put("ctx_b1", w.ctx_b1, {kContextHidden});
  put("ctx_W2", w.ctx_W2, {3, kContextHidden});
  put("ctx_b2", w.ctx_b2, {3});
  return d;
}

class PyTokenAllocator {
 public:
  explicit PyTokenAllocator(const py::dict& kw) {
    AllocatorConfig c;
    c.max_width = kw["max_width"].cast<int>();
    c.max_height = kw["max_height"].cast<int>();
    c.max_candidates = kw["max_candidates"].cast<int>();
    c.gestalt_x = kw["gestalt_x"].cast<int>();
    c.gestalt_y = kw["gestalt_y"].cast<int>();
    c.gestalt_lod = kw["gestalt_lod"].cast<int>();
    c.saccades = kw["saccades"].cast<int>();
    c.total_budget = kw["total_budget"].cast<int>();
    c.steepness = kw["steepness"].cast<float>();
    c.offset = kw["offset"].cast<float>();
    c.strategy = static_cast<SaccadeStrategy>(kw["strategy"].cast<int>());
    c.seed = kw["seed"].cast<uint32_t>();
    c.decay = kw["decay"].cast<float>();
    c.motion_boost = kw["motion_boost"].cast<float>();
    c.motion_threshold = kw["motion_threshold"].cast<float>();
    c.cut_motion = kw["cut_motion"].cast<float>();
    c.cut_share = kw["cut_share"].cast<float>();
    c.cut_correlation = kw["cut_correlation"].cast<float>();
    c.gestalt_overlap = kw["gestalt_overlap"].cast<bool>();
    c.glimpse_size = kw["glimpse_size"].cast<int>();
    c.hysteresis = kw["hysteresis"].cast<float>();
    c.lod_band = kw["lod_band"].cast<float>();
    c.text_floor = kw["text_floor"].cast<int>();
    c.text_threshold = kw["text_threshold"].cast<float>();
    c.device = kw["device"].cast<std::string>() == "cuda" ? Device::kCUDA : Device::kCPU;
    c.cuda_device = kw["cuda_device"].cast<int>();
    c.num_threads = kw["num_threads"].cast<int>();
    std::unique_ptr<TokenAllocator> a;
    throw_if_error(TokenAllocator::create(c, &a));
    alloc_ = std::move(a);
  }

  void set_weights(const py::dict& d) { throw_if_error(alloc_->set_weights(weights_from_dict(d))); }

  // None: no query embedding (zeros).
  void set_query_embedding(const py::object& e) {
    if (e.is_none()) return throw_if_error(alloc_->set_query_embedding(nullptr));
    auto a = e.cast<py::array_t<float, py::array::c_style | py::array::forcecast>>();
    if (a.size() != kQueryEmbeddingDims)
      throw py::value_error("query embedding: " + std::to_string(a.size()) + " values; expected " +
                            std::to_string(kQueryEmbeddingDims));
    throw_if_error(alloc_->set_query_embedding(a.data()));
  }

  // copy=true: host copies (safe to keep; on CUDA one wait for the whole pack). copy=false: zero-copy
  // views of the allocator's memory (read-only NumPy on the CPU, DeviceArray on CUDA: no host wait),
  // valid until the next run.
  // `cascade_obj`: the ClusterCascade whose candidates this run reads.
  py::dict run(py::object self, PyTextureBuilder& builder, py::object cascade_obj, bool has_query, uintptr_t stream,
               bool copy) {
    PyClusterCascade& cascade = cascade_obj.cast<PyClusterCascade&>();
    TokenPack v;
    Status s;
    {
      py::gil_scoped_release nogil;  // also while copy_to_host waits for the device
      {
        std::lock_guard<std::mutex> lock(builder.mutex());
        s = alloc_->run(builder.last_texture(), cascade.last_view(), has_query, &v, reinterpret_cast<void*>(stream));
      }
      if (s.ok() && copy) s = alloc_->copy_to_host(&v, reinterpret_cast<void*>(stream));
    }
    throw_if_error(s);
    const Device d = v.device;  // the host after copy_to_host
    const py::ssize_t N = v.num_tokens, P = v.glimpse_size, C = v.candidate_capacity;
    const py::ssize_t h4 = v.patch_grid_height, w4 = v.patch_grid_width;
    TokenAllocator* alloc = alloc_.get();
    const int device_id = alloc_->config().cuda_device;
    auto out = [&](const void* ptr, std::vector<int64_t> shape, const char* dtype,
                   py::object owner = py::object()) -> py::object {
      if (!owner) owner = self;
      py::ssize_t n = 1;
      for (auto e : shape) n *= e;
      if (copy) return host_copy(reinterpret_cast<uintptr_t>(ptr), n, dtype, d).attr("reshape")(py::cast(shape));
      if (d == Device::kCPU) {
        py::array a(py::dtype(dtype), std::vector<py::ssize_t>(shape.begin(), shape.end()), ptr, owner);
        py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
        return std::move(a);
      }
      return py::cast(DeviceArray(reinterpret_cast<uintptr_t>(ptr), shape, dtype, d, device_id, owner,
                                  [alloc](void* stream) {
                                    return stream ? alloc->wait_on_stream(stream) : alloc->synchronize();
                                  }));
    };
    py::dict r;
    r["positions"] = out(v.positions, {N, 2}, "float32");
    r["levels"] = out(v.levels, {N}, "int32");
    r["budgets"] = out(v.budgets, {N}, "int32");
    r["kinds"] = out(v.kinds, {N}, "int32");
    r["patches"] = out(v.patches, {N}, "int32");
    r["scores"] = out(v.scores, {N}, "float32");
    r["previous"] = out(v.previous, {N}, "int32");
    r["reuse"] = out(v.reuse, {N}, "int32");
    r["reuse_drift"] = out(v.reuse_drift, {N}, "float32");
    r["glimpses"] = out(v.glimpses, {N, 3, P, P}, "float32");
    r["relevance"] = out(v.relevance, {h4, w4}, "float32");
    r["homunculus"] = out(v.homunculus, {h4, w4}, "float32");
    // [1] each; on CUDA with copy=false device views, read when the caller asks (pipeline.py).
    r["scene_cut"] = out(v.scene_cut, {1}, "int32");
    r["num_saccades"] = out(v.num_saccades, {1}, "int32");
    r["candidates"] = out(v.candidates, {C}, "int32");
    for (auto [name, ptr] : {std::pair<const char*, const float*>{"info", v.info}, {"salience", v.salience},
                             {"query", v.query}, {"raw", v.raw}, {"balanced", v.balanced},
                             {"candidate_relevance", v.candidate_relevance}})
      r[name] = out(ptr, {C}, "float32");
    r["context_weights"] = out(v.context_weights, {3}, "float32");
    r["num_gestalt"] = v.num_gestalt;
    return r;
  }

  void reset() { alloc_->reset(); }

  // Waits (without the GIL) for the last run or gather on the device.
  void synchronize() {
    Status s;
    {
      py::gil_scoped_release nogil;
      s = alloc_->synchronize();
    }
    throw_if_error(s);
  }

  // Pointers are validated by the Python layer (dtype float32, contiguous, device, shapes).
  void gather(uintptr_t features, int channels, int h, int w, uintptr_t out, uintptr_t stream) {
    Status s;
    {
      py::gil_scoped_release nogil;
      s = alloc_->gather_features(reinterpret_cast<const float*>(features), channels, h, w,
                                  reinterpret_cast<float*>(out), reinterpret_cast<void*>(stream));
    }
    throw_if_error(s);
  }

 private:
  std::unique_ptr<TokenAllocator> alloc_;
};

}  // namespace

// ------------------------------------------------------------------ Python class

void bind_allocate(py::module_& m) {
  py::class_<PyTokenAllocator>(m, "TokenAllocator")
      .def(py::init<const py::dict&>())
      .def("set_weights", &PyTokenAllocator::set_weights)
      .def("set_query_embedding", &PyTokenAllocator::set_query_embedding)
      .def("run", [](py::object self, PyBuilderRef b, py::object c, bool q, uintptr_t s, bool copy) {
        return self.cast<PyTokenAllocator&>().run(self, b, std::move(c), q, s, copy);
      })
      .def("reset", &PyTokenAllocator::reset)
      .def("synchronize", &PyTokenAllocator::synchronize)
      .def("gather", &PyTokenAllocator::gather);
  m.def("default_balance_weights", [] { return weights_to_dict(default_balance_weights()); });
}

}  // namespace arrcoc::pyglue
