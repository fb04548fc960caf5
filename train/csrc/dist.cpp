// The c10d shim: what fnc-train needs of libtorch's distributed engine, as a
// small C API on tch's tensors (`at::Tensor*`): a TCPStore rendezvous, a Gloo
// (CPU) or NCCL (CUDA) process group, and all-reduce (also started now and
// waited later), all-gather, broadcast and barrier: NCCL's waited on the CUDA
// stream, Gloo's on the host with the group's timeout (shim.hpp). Synchronised
// BatchNorm is in sync_bn.cpp. Every entry point catches
// C++ exceptions and returns them as text (libtorch's without their C++
// backtrace), so nothing unwinds into Rust.
#include "shim.hpp"

#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef FNC_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>
#include <memory>
#include <vector>

namespace fnc {
std::atomic<int> live_groups{0};
std::atomic<long long> host_waits{0};
}  // namespace fnc

namespace {

using fnc::Group;
using fnc::group_of;
using fnc::guarded;
using fnc::put;

constexpr std::chrono::milliseconds kMonitorTimeout(2000);

// All-reduce (sum) whose gradient is the all-reduced gradient: each rank's
// partial derivative of a loss that every rank computes reaches every input.
// The node keeps a reference to its group (a capsule in its saved data).
struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            c10::IValue group) {
    ctx->saved_data["group"] = group;
    at::Tensor y = x.clone();
    fnc::all_reduce_sum(fnc::from_capsule(group), y);
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    at::Tensor d = grads[0].contiguous().clone();
    fnc::all_reduce_sum(fnc::from_capsule(ctx->saved_data["group"]), d);
    return {d, at::Tensor()};
  }
};

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// A collective in flight: its work and the group it runs on (held, so the
// group outlives a handle dropped before the wait).
struct Pending {
  c10::intrusive_ptr<Group> group;
  c10::intrusive_ptr<c10d::Work> work;
};

}  // namespace

extern "C" {

// Groups alive in this process (tests: a graph keeps its group alive).
int fnc_dist_live_groups() { return fnc::live_groups.load(); }

// Collectives waited on the host so far in this process.
long long fnc_dist_host_waits() { return fnc::host_waits.load(); }

// Whether this build can make NCCL groups.
int fnc_dist_has_nccl() {
#ifdef FNC_WITH_NCCL
  return 1;
#else
  return 0;
#endif
}

// Rendezvous at host:port and make the group. `serve`: this process runs the
// store (rank 0, unless a launcher such as torchrun already runs one).
// backend: 0 = Gloo, 1 = NCCL. Returns null with `err` filled on failure.
void* fnc_dist_new(int backend, const char* host, int port, int serve, int rank, int world,
                   int64_t timeout_ms, char* err, size_t errlen) {
  return guarded<void*>(err, errlen, nullptr, [&]() -> void* {
    std::chrono::milliseconds timeout(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = serve != 0;
    opts.numWorkers = static_cast<std::size_t>(world);
    opts.waitWorkers = true;
    opts.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    auto store = c10::make_intrusive<c10d::PrefixStore>("fnc", tcp);
    // Owned here until the group is whole, so a failure frees it.
    auto g = c10::make_intrusive<Group>();
    g->store = store;
    g->timeout = timeout;
    g->rank = rank;
    g->world = world;
    for (auto* conn : {&g->beat, &g->probe}) {
      auto own = tcp->clone();
      own->setTimeout(kMonitorTimeout);
      *conn = c10::make_intrusive<c10d::PrefixStore>("fnc", own);
    }
    if (backend == 0) {
      auto o = c10d::ProcessGroupGloo::Options::create(timeout);
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname != nullptr && *ifname != '\0') {
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (is_loopback(host)) {
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      g->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, o);
    } else {
#ifdef FNC_WITH_NCCL
      auto o = c10d::ProcessGroupNCCL::Options::create();
      // NCCL's watchdog ends a collective that outlives the timeout; the
      // heartbeat names a silent rank before that (see dist/heartbeat.rs).
      // Errors are raised where the rank next waits (the watchdog aborts the
      // communicators and leaves the process alive to say which rank
      // stopped) unless the user chose another mode.
      setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2", /*overwrite=*/0);
      o->timeout = timeout;
      g->nccl = true;
      g->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, o);
#else
      throw std::runtime_error(
          "this build has no NCCL support (its headers were absent at build time)");
#endif
    }
    return static_cast<void*>(g.release());
  });
}

// Gives up the caller's reference (autograd nodes may hold more).
void fnc_dist_free(void* group) {
  c10::intrusive_ptr<Group>::reclaim(group_of(group));
}

// Shuts the backend down (NCCL: its communicators); collectives fail after.
int fnc_dist_shutdown(void* group, char* err, size_t errlen) {
  return guarded(err, errlen, 1, [&] {
    auto* g = group_of(group);
    std::lock_guard<std::mutex> hold(g->ops);
    if (!g->down.exchange(true)) {
      g->backend->shutdown();
    }
    return 0;
  });
}

// Aborts the backend (NCCL: its communicators, so kernels stuck waiting for a
// dead rank return); collectives fail after. For a rank found dead: it
// does not wait for the lock a shutdown may hold while blocked on that rank.
int fnc_dist_abort(void* group, char* err, size_t errlen) {
  return guarded(err, errlen, 1, [&] {
    auto* g = group_of(group);
    if (!g->aborted.exchange(true)) {
      g->backend->abort();
    }
    return 0;
  });
}

// In-place sum over ranks.
int fnc_dist_all_reduce(void* group, at::Tensor* t, char* err, size_t errlen) {
  return guarded(err, errlen, 1, [&] {
    fnc::all_reduce_sum(group_of(group), *t);
    return 0;
  });
}

// A new tensor: the sum over ranks of `x`, differentiable (its gradient is
// the sum over ranks of the incoming gradients).
at::Tensor* fnc_dist_all_reduce_autograd(void* group, at::Tensor* x, char* err, size_t errlen) {
  return guarded<at::Tensor*>(err, errlen, nullptr, [&] {
    return new at::Tensor(AllReduceSum::apply(*x, fnc::capsule_of(group_of(group))));
  });
}

// Starts an in-place sum over the ranks of `t` and returns the collective in
// flight (null with `err` filled on failure): the caller goes on and waits
// with fnc_dist_work_wait, which also frees it.
void* fnc_dist_all_reduce_start(void* group, at::Tensor* t, char* err, size_t errlen) {
  return guarded<void*>(err, errlen, nullptr, [&]() -> void* {
    auto* g = group_of(group);
    auto work = fnc::start_all_reduce(g, *t);
    return static_cast<void*>(
        new Pending{c10::intrusive_ptr<Group>::reclaim_copy(g), std::move(work)});
  });
}

// Waits for a collective started by fnc_dist_all_reduce_start (on the CUDA
// stream with NCCL, on the host with Gloo) and frees it, whatever the outcome.
int fnc_dist_work_wait(void* pending, char* err, size_t errlen) {
  std::unique_ptr<Pending> p(static_cast<Pending*>(pending));
  return guarded(err, errlen, 1, [&] {
    fnc::wait(p->group.get(), p->work);
    return 0;
  });
}

// `out` (world x the shape of `x` along dim 0, contiguous) receives every
// rank's `x`, in rank order.
int fnc_dist_all_gather(void* group, at::Tensor* x, at::Tensor* out, char* err, size_t errlen) {
  return guarded(err, errlen, 1, [&] {
    fnc::all_gather_into(group_of(group), *x, *out);
    return 0;
  });
}

int fnc_dist_broadcast(void* group, at::Tensor* t, int root, char* err, size_t errlen) {
  return guarded(err, errlen, 1, [&] {
    auto* g = group_of(group);
    c10::intrusive_ptr<c10d::Work> w;
    {
      std::lock_guard<std::mutex> hold(g->ops);
      std::vector<at::Tensor> v{*t};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      w = g->backend->broadcast(v, o);
    }
    fnc::wait(g, w);
    return 0;
  });
}

int fnc_dist_barrier(void* group, char* err, size_t errlen) {
  return guarded(err, errlen, 1, [&] {
    auto* g = group_of(group);
    c10::intrusive_ptr<c10d::Work> w;
    {
      std::lock_guard<std::mutex> hold(g->ops);
      w = g->backend->barrier();
    }
    fnc::wait(g, w);
    return 0;
  });
}

// Sets `key` of the rendezvous store to `value` (text), through the
// heartbeat's own connection.
int fnc_dist_store_set(void* group, const char* key, const char* value, char* err, size_t errlen) {
  return guarded(err, errlen, -1, [&] {
    std::string v(value);
    group_of(group)->beat->set(std::string(key), std::vector<uint8_t>(v.begin(), v.end()));
    return 0;
  });
}

// Reads `key` of the store into `out` (text), through the probe's own
// connection (its timeout is fixed, kMonitorTimeout): 1 = found, 0 = absent,
// -1 = the store cannot be reached.
int fnc_dist_store_get(void* group, const char* key, char* out, size_t outlen, char* err,
                       size_t errlen) {
  return guarded(err, errlen, -1, [&] {
    auto* g = group_of(group);
    std::lock_guard<std::mutex> hold(g->probe_lock);
    std::string k(key);
    if (!g->probe->check({k})) {
      return 0;
    }
    auto v = g->probe->get(k);
    put(out, outlen, std::string(v.begin(), v.end()));
    return 1;
  });
}

}  // extern "C"
