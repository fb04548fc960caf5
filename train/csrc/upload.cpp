// Batches uploaded to the GPU on a side stream: the feed thread copies a
// batch from pinned host memory on a stream of libtorch's pool and records an
// event; the training thread makes its own stream wait for that event (the
// host does not wait) before the step reads the batch. The copy thus runs
// beside the previous step's kernels rather than between them. Built only
// where libtorch has CUDA and its headers were found (FNC_WITH_NCCL).
#include "shim.hpp"

// Only libtorch's exported functions and the device-generic (virtual) guards
// and events are used, so the shim needs no CUDA runtime of its own.
#ifdef FNC_WITH_NCCL
#include <c10/core/DeviceGuard.h>
#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <memory>

extern "C" {

// Whether this build can upload on a side stream.
int fnc_cuda_side_uploads() {
#ifdef FNC_WITH_NCCL
  return 1;
#else
  return 0;
#endif
}

// `host` (a CPU tensor) on CUDA device `device`: copied into pinned memory
// and uploaded without blocking on a side stream, after which an event is
// recorded (`*event`, for fnc_cuda_upload_wait, which frees it). Null with
// `err` filled on failure.
at::Tensor* fnc_cuda_upload(at::Tensor* host, int device, void** event, char* err,
                            size_t errlen) {
  return fnc::guarded<at::Tensor*>(err, errlen, nullptr, [&]() -> at::Tensor* {
#ifdef FNC_WITH_NCCL
    const c10::Device on_gpu(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device));
    c10::DeviceGuard on(on_gpu);
    c10::Stream side = c10::cuda::getStreamFromPool(false, on_gpu.index()).unwrap();
    c10::StreamGuard in(side);
    at::Tensor pinned = host->is_pinned() ? *host : host->pin_memory();
    at::Tensor out = pinned.to(on_gpu, /*non_blocking=*/true);
    auto done = std::make_unique<c10::Event>(c10::DeviceType::CUDA);
    done->record(side);
    *event = static_cast<void*>(done.release());
    return new at::Tensor(out);
#else
    (void)host;
    (void)device;
    (void)event;
    throw std::runtime_error("this build has no CUDA side streams");
#endif
  });
}

// Makes the calling thread's current stream on the device of `t` wait for the
// upload's event (the host goes on), and records that stream's use of `t`'s
// memory, so that the allocator does not give it back to the side stream
// before the step is done with it. Frees the event, whatever the outcome.
int fnc_cuda_upload_wait(void* event, at::Tensor* t, char* err, size_t errlen) {
#ifdef FNC_WITH_NCCL
  std::unique_ptr<c10::Event> done(static_cast<c10::Event*>(event));
  return fnc::guarded(err, errlen, 1, [&] {
    auto current = c10::cuda::getCurrentCUDAStream(t->device().index());
    done->block(current.unwrap());
    c10::cuda::CUDACachingAllocator::recordStream(t->storage().data_ptr(), current);
    return 0;
  });
#else
  (void)event;
  (void)t;
  fnc::put(err, errlen, "this build has no CUDA side streams");
  return 1;
#endif
}

// Frees an upload's event that will not be waited for (a batch dropped
// unread).
void fnc_cuda_upload_free(void* event) {
#ifdef FNC_WITH_NCCL
  delete static_cast<c10::Event*>(event);
#else
  (void)event;
#endif
}

}  // extern "C"
