// The graph cache behind run_as_graph (see graph_cache.h).
#include "graph_cache.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/cuda_backend.h"
#include "cuda_check.h"

namespace arrcoc::cuda {
namespace {

constexpr size_t kMaxGraphs = 64;    // executables kept per process (a few per stage per stream)
constexpr int kMaxMisses = 8;        // consecutive misses of a stage before it stops capturing ...
constexpr int kDirectRuns = 256;     // ... for this many runs, then tries again
constexpr size_t kMaxOwners = 1024;  // operators whose policy is remembered (then forgotten at once)

// ARRCOC_CUDA_GRAPHS=0 turns graphs off at start; set_graphs_enabled() at run time.
std::atomic<bool> g_enabled{[] {
  const char* v = std::getenv("ARRCOC_CUDA_GRAPHS");
  return !(v && std::strcmp(v, "0") == 0);
}()};

struct Entry {
  int device;
  GraphStage stage;
  std::string key;
  cudaGraphExec_t exec;
  uint64_t last_use;
};

// One operator's capture-or-not policy for one stage.
struct OwnerState {
  int misses = 0;       // consecutive runs that captured (no cached graph fitted)
  int direct_left = 0;  // runs left without capturing
};

class GraphCache {
 public:
  static GraphCache& get() {
    static GraphCache* c = new GraphCache();  // never destroyed: executables outlive static destructors
    return *c;
  }

  Status run(GraphStage stage, const void* owner, const void* key, size_t key_bytes, cudaStream_t stream,
             const std::function<Status(cudaStream_t)>& enqueue) {
    const int device = current_device();
    const std::string_view k(static_cast<const char*>(key), key_bytes);  // copied only into a new entry
    {
      // Held while looking up and launching (an executable another thread evicts must not be
      // destroyed in between), never while launching kernels one by one or capturing.
      std::unique_lock<std::mutex> lock(mu_);
      if (Status s; launch_cached(device, stage, k, stream, &s)) {
        owners_[{owner, static_cast<int>(stage)}].misses = 0;
        return s;
      }
      if (owners_.size() >= kMaxOwners) owners_.clear();  // operators come and go; forget them all
      OwnerState& st = owners_[{owner, static_cast<int>(stage)}];
      bool direct = false;
      if (st.direct_left > 0) {
        --st.direct_left;
        direct = true;
      } else if (++st.misses > kMaxMisses) {
        st.misses = 0;
        st.direct_left = kDirectRuns;
        direct = true;
      }
      if (direct) {
        lock.unlock();
        return enqueue(stream);
      }
    }
    cudaGraphExec_t exec = nullptr;
    {
      std::lock_guard<std::mutex> lock(capture_mu_);  // one capture stream per device
      exec = capture(device, enqueue);
    }
    if (!exec) return enqueue(stream);  // not capturable here: run it as it is (a real error shows there)
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_.size() >= kMaxGraphs) {
      size_t oldest = 0;
      for (size_t i = 1; i < entries_.size(); ++i)
        if (entries_[i].last_use < entries_[oldest].last_use) oldest = i;
      cudaGraphExecDestroy(entries_[oldest].exec);  // CUDA frees it after launches in flight end
      entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(oldest));
    }
    entries_.push_back(Entry{device, stage, std::string(k), exec, ++tick_});
    return check(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
  }

 private:
  // Launches the cached executable of (device, stage, key) on stream, if there is one (*s: how the
  // launch went). Called with mu_ held.
  bool launch_cached(int device, GraphStage stage, std::string_view k, cudaStream_t stream, Status* s) {
    for (Entry& e : entries_)
      if (e.device == device && e.stage == stage && e.key == k) {
        e.last_use = ++tick_;
        *s = check(cudaGraphLaunch(e.exec, stream), "cudaGraphLaunch");
        return true;
      }
    return false;
  }

  // enqueue captured on this device's capture stream and instantiated; null when anything failed
  // (the capture refused, or an error only under capture, e.g. lazy module loading on old
  // drivers): nothing has run, so the caller runs the work directly, where a real error shows.
  cudaGraphExec_t capture(int device, const std::function<Status(cudaStream_t)>& enqueue) {
    cudaStream_t& cap = capture_streams_[device];
    if (!cap && cudaStreamCreateWithFlags(&cap, cudaStreamNonBlocking) != cudaSuccess) {
      cudaGetLastError();
      cap = nullptr;
      return nullptr;
    }
    if (cudaStreamBeginCapture(cap, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    const Status s = enqueue(cap);
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(cap, &graph);  // ends capture mode in every case
    if (!s.ok() || ended != cudaSuccess || !graph) {
      cudaGetLastError();
      if (graph) cudaGraphDestroy(graph);
      return nullptr;
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t made = cudaGraphInstantiateWithFlags(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (made != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    return exec;
  }

  std::mutex mu_;          // entries_, owners_, tick_
  std::mutex capture_mu_;  // capture_streams_ and their use
  std::vector<Entry> entries_;
  std::map<std::pair<const void*, int>, OwnerState> owners_;
  std::map<int, cudaStream_t> capture_streams_;
  uint64_t tick_ = 0;
};

}  // namespace

Status run_as_graph(GraphStage stage, const void* owner, const void* key, size_t key_bytes, cudaStream_t stream,
                    const std::function<Status(cudaStream_t)>& enqueue) {
  if (!g_enabled.load(std::memory_order_relaxed)) return enqueue(stream);
  return GraphCache::get().run(stage, owner, key, key_bytes, stream, enqueue);
}

void set_graphs_enabled(bool enabled) noexcept { g_enabled.store(enabled); }
bool graphs_enabled() noexcept { return g_enabled.load(); }

}  // namespace arrcoc::cuda
