// The c10d shim: what fnc-train needs of libtorch's distributed engine, as a
// small C API on tch's tensors (`at::Tensor*`): a TCPStore rendezvous, a Gloo
// (CPU) or NCCL (CUDA) process group, and all-reduce, all-gather, broadcast and
// barrier, each waited on with the group's timeout. Every entry point catches
// C++ exceptions and returns them as text (libtorch's without their C++
// backtrace), so nothing unwinds into Rust.
#include <ATen/ATen.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef FNC_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// A process group. Reference-counted: the Rust handle holds one reference,
// and every autograd node of a differentiable all-reduce holds another, so a
// graph that outlives the Rust handle still finds its group in the backward.
struct Group : torch::CustomClassHolder {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  // Connections of their own to the store, each with a short timeout set once:
  // the heartbeat thread writes through `beat`, diagnosis reads through
  // `probe`, so neither changes the timeout of a connection another uses.
  c10::intrusive_ptr<c10d::Store> beat;
  c10::intrusive_ptr<c10d::Store> probe;
  std::mutex probe_lock;
  // Held around every call into the backend: c10d backends are not made for
  // collectives issued from two threads at once (Gloo's tag counter is a
  // plain integer), and every rank must issue them in one order anyway.
  std::mutex ops;
  std::chrono::milliseconds timeout{0};
  int rank = 0;
  int world = 1;
  std::atomic<bool> down{false};

  Group();
  ~Group() override;
};

// Groups alive in this process (a handle or an autograd node holds each).
std::atomic<int> live_groups{0};

Group::Group() { live_groups.fetch_add(1); }
Group::~Group() { live_groups.fetch_sub(1); }

constexpr std::chrono::milliseconds kMonitorTimeout(2000);

void put(char* err, size_t len, const std::string& msg) {
  if (err != nullptr && len > 0) {
    std::snprintf(err, len, "%s", msg.c_str());
  }
}

void wait(Group* g, const c10::intrusive_ptr<c10d::Work>& w) {
  if (!w->wait(g->timeout)) {
    throw std::runtime_error("collective timed out");
  }
}

void all_reduce_sum(Group* g, at::Tensor& t) {
  std::lock_guard<std::mutex> hold(g->ops);
  std::vector<at::Tensor> v{t};
  wait(g, g->backend->allreduce(v));
}

// All-reduce (sum) whose gradient is the all-reduced gradient: each rank's
// partial derivative of a loss that every rank computes reaches every input.
// The node keeps a reference to its group (a capsule in its saved data).
struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            c10::IValue group) {
    auto g = c10::static_intrusive_pointer_cast<Group>(group.toCapsule());
    ctx->saved_data["group"] = group;
    at::Tensor y = x.clone();
    all_reduce_sum(g.get(), y);
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto g = c10::static_intrusive_pointer_cast<Group>(ctx->saved_data["group"].toCapsule());
    at::Tensor d = grads[0].contiguous().clone();
    all_reduce_sum(g.get(), d);
    return {d, at::Tensor()};
  }
};

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// Runs `f`; a C++ exception becomes `failed`, its text in `err`.
template <class R, class F>
R guarded(char* err, size_t errlen, R failed, F&& f) {
  try {
    return f();
  } catch (const c10::Error& e) {
    put(err, errlen, e.what_without_backtrace());
  } catch (const std::exception& e) {
    put(err, errlen, e.what());
  } catch (...) {
    put(err, errlen, "an unknown C++ exception");
  }
  return failed;
}

Group* group_of(void* group) {
  return reinterpret_cast<Group*>(group);
}

}  // namespace

extern "C" {

// Groups alive in this process (tests: a graph keeps its group alive).
int fnc_dist_live_groups() { return live_groups.load(); }

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
      o->timeout = timeout;
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

// In-place sum over ranks.
int fnc_dist_all_reduce(void* group, at::Tensor* t, char* err, size_t errlen) {
  return guarded(err, errlen, 1, [&] {
    all_reduce_sum(group_of(group), *t);
    return 0;
  });
}

// A new tensor: the sum over ranks of `x`, differentiable (its gradient is
// the sum over ranks of the incoming gradients).
at::Tensor* fnc_dist_all_reduce_autograd(void* group, at::Tensor* x, char* err, size_t errlen) {
  return guarded<at::Tensor*>(err, errlen, nullptr, [&] {
    auto g = c10::intrusive_ptr<Group>::reclaim_copy(group_of(group));
    c10::IValue capsule =
        c10::IValue::make_capsule(c10::static_intrusive_pointer_cast<torch::CustomClassHolder>(g));
    return new at::Tensor(AllReduceSum::apply(*x, capsule));
  });
}

// `out` (world x the shape of `x` along dim 0, contiguous) receives every
// rank's `x`, in rank order.
int fnc_dist_all_gather(void* group, at::Tensor* x, at::Tensor* out, char* err, size_t errlen) {
  return guarded(err, errlen, 1, [&] {
    auto* g = group_of(group);
    std::lock_guard<std::mutex> hold(g->ops);
    std::vector<std::vector<at::Tensor>> outs(1);
    outs[0] = out->chunk(g->world, 0);
    std::vector<at::Tensor> ins{x->contiguous()};
    wait(g, g->backend->allgather(outs, ins));
    return 0;
  });
}

int fnc_dist_broadcast(void* group, at::Tensor* t, int root, char* err, size_t errlen) {
  return guarded(err, errlen, 1, [&] {
    auto* g = group_of(group);
    std::lock_guard<std::mutex> hold(g->ops);
    std::vector<at::Tensor> v{*t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    wait(g, g->backend->broadcast(v, o));
    return 0;
  });
}

int fnc_dist_barrier(void* group, char* err, size_t errlen) {
  return guarded(err, errlen, 1, [&] {
    auto* g = group_of(group);
    std::lock_guard<std::mutex> hold(g->ops);
    wait(g, g->backend->barrier());
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
