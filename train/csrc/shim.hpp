// What the shim's files share: the process group, how a collective is waited,
// and how C++ exceptions become error text at the C boundary.
#pragma once

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/custom_class.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>

namespace fnc {

// Groups alive in this process (a handle or an autograd node holds each).
extern std::atomic<int> live_groups;
// Collectives this process waited for on the host (Gloo's; NCCL's are waited
// on the CUDA stream). The trainer reports the count per step.
extern std::atomic<long long> host_waits;

// A process group. Reference-counted: the Rust handle holds one reference,
// and every autograd node of a differentiable collective holds another, so a
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
  // NCCL: collectives are waited on the CUDA stream, never on the host.
  bool nccl = false;
  std::atomic<bool> down{false};
  std::atomic<bool> aborted{false};

  Group() { live_groups.fetch_add(1); }
  ~Group() override { live_groups.fetch_sub(1); }
};

inline Group* group_of(void* group) { return reinterpret_cast<Group*>(group); }

// Waits for `w`. NCCL: the current CUDA stream waits for the collective and
// the host goes on (NCCL's watchdog enforces the group's timeout). Gloo: the
// host waits, at most the group's timeout.
inline void wait(Group* g, const c10::intrusive_ptr<c10d::Work>& w) {
  if (g->nccl) {
    w->wait();
    return;
  }
  host_waits.fetch_add(1);
  if (!w->wait(g->timeout)) {
    throw std::runtime_error("collective timed out");
  }
}

// Starts an in-place sum over the ranks of `t` (the caller waits).
inline c10::intrusive_ptr<c10d::Work> start_all_reduce(Group* g, at::Tensor& t) {
  std::lock_guard<std::mutex> hold(g->ops);
  std::vector<at::Tensor> v{t};
  return g->backend->allreduce(v);
}

inline void all_reduce_sum(Group* g, at::Tensor& t) { wait(g, start_all_reduce(g, t)); }

// `out` (`[world * n, ...]`, contiguous) receives every rank's `x` (`[n, ...]`)
// in rank order.
inline void all_gather_into(Group* g, const at::Tensor& x, at::Tensor& out) {
  c10::intrusive_ptr<c10d::Work> w;
  {
    std::lock_guard<std::mutex> hold(g->ops);
    std::vector<std::vector<at::Tensor>> outs(1);
    outs[0] = out.chunk(g->world, 0);
    std::vector<at::Tensor> ins{x.contiguous()};
    w = g->backend->allgather(outs, ins);
  }
  wait(g, w);
}

inline void put(char* err, size_t len, const std::string& msg) {
  if (err != nullptr && len > 0) {
    std::snprintf(err, len, "%s", msg.c_str());
  }
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

// The group as an IValue an autograd node can keep (a new reference).
inline c10::IValue capsule_of(Group* g) {
  auto held = c10::intrusive_ptr<Group>::reclaim_copy(g);
  return c10::IValue::make_capsule(
      c10::static_intrusive_pointer_cast<torch::CustomClassHolder>(held));
}

inline Group* from_capsule(const c10::IValue& v) {
  return c10::static_intrusive_pointer_cast<Group>(v.toCapsule()).get();
}

}  // namespace fnc
