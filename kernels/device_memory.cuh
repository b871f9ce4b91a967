// Owned CUDA resources: DeviceBuffer<T> (cudaMalloc'd memory), Stream, Event, CublasHandle and
// CUDA graphs. Moves allowed, copies deleted, destructors never throw (a failure to free during
// unwinding is ignored: there is nothing better to do with it).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "host/errors.hpp"
#include "kernels/cuda_check.cuh"

namespace rbm::cuda {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t count) { resize(count); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~DeviceBuffer() { release(); }

  // Reallocates to `count` elements when the size changes; the contents are then undefined.
  void resize(size_t count) {
    if (count == size_) return;
    release();
    if (count == 0) return;
    void* memory = nullptr;
    CUDA_CHECK(cudaMalloc(&memory, count * sizeof(T)));
    data_ = static_cast<T*>(memory);
    size_ = count;
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }
  bool empty() const { return size_ == 0; }

  // Host -> device of `count` elements at the start of the buffer, ordered on `stream`. From
  // pageable memory the call returns once the source has been staged, so it may be freed then.
  void upload(const T* host, size_t count, cudaStream_t stream) {
    if (count > size_) {
      throw std::length_error("DeviceBuffer::upload: more elements than allocated");
    }
    if (count == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(data_, host, count * sizeof(T), cudaMemcpyHostToDevice, stream));
  }
  // Device -> host, ordered on `stream`; returns once the data are on the host. CUDA documents an
  // async copy to pageable memory only as one that "might be synchronous", so the stream is
  // synchronized here rather than trusted to have been.
  void download(T* host, size_t count, cudaStream_t stream) const {
    if (count > size_) {
      throw std::length_error("DeviceBuffer::download: more elements than held");
    }
    if (count == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(host, data_, count * sizeof(T), cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
  }

 private:
  void release() noexcept {
    if (data_ != nullptr) (void)cudaFree(data_);
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  size_t size_ = 0;
};

// A non-blocking stream (no implicit synchronization with the legacy default stream, which also
// makes it capturable into a graph).
class Stream {
 public:
  Stream() { CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
  Stream& operator=(Stream&& other) noexcept {
    if (this != &other) {
      release();
      stream_ = std::exchange(other.stream_, nullptr);
    }
    return *this;
  }
  ~Stream() { release(); }

  cudaStream_t get() const { return stream_; }
  void synchronize() const { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  void release() noexcept {
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }
  cudaStream_t stream_ = nullptr;
};

class Event {
 public:
  explicit Event(unsigned flags = cudaEventDefault) {
    CUDA_CHECK(cudaEventCreateWithFlags(&event_, flags));
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  Event(Event&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}
  Event& operator=(Event&& other) noexcept {
    if (this != &other) {
      release();
      event_ = std::exchange(other.event_, nullptr);
    }
    return *this;
  }
  ~Event() { release(); }

  cudaEvent_t get() const { return event_; }
  void record(cudaStream_t stream) { CUDA_CHECK(cudaEventRecord(event_, stream)); }
  void synchronize() const { CUDA_CHECK(cudaEventSynchronize(event_)); }
  // Milliseconds from `start` to this event; both must have completed.
  float elapsed_ms_since(const Event& start) const {
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, event_));
    return ms;
  }

 private:
  void release() noexcept {
    if (event_ != nullptr) (void)cudaEventDestroy(event_);
    event_ = nullptr;
  }
  cudaEvent_t event_ = nullptr;
};

class CublasHandle {
 public:
  CublasHandle() { CUBLAS_CHECK(cublasCreate(&handle_)); }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  CublasHandle(CublasHandle&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  CublasHandle& operator=(CublasHandle&& other) noexcept {
    if (this != &other) {
      release();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  ~CublasHandle() { release(); }

  cublasHandle_t get() const { return handle_; }

 private:
  void release() noexcept {
    if (handle_ != nullptr) (void)cublasDestroy(handle_);
    handle_ = nullptr;
  }
  cublasHandle_t handle_ = nullptr;
};

// CUDA graphs: cudaGraph_t is CUgraph_st*, cudaGraphExec_t is CUgraphExec_st*.
struct GraphDeleter {
  void operator()(cudaGraph_t graph) const noexcept { (void)cudaGraphDestroy(graph); }
};
struct GraphExecDeleter {
  void operator()(cudaGraphExec_t exec) const noexcept { (void)cudaGraphExecDestroy(exec); }
};
using Graph = std::unique_ptr<std::remove_pointer_t<cudaGraph_t>, GraphDeleter>;
using GraphExec = std::unique_ptr<std::remove_pointer_t<cudaGraphExec_t>, GraphExecDeleter>;

// Device memory a request leaves free for cuBLAS and the rest of the process.
constexpr size_t kMemoryMargin = size_t{256} << 20;

// Refuses a request before it allocates: unless `bytes` more fit in the free device memory less
// kMemoryMargin, throws InputError "<request> N MiB of device memory and F MiB are free (with
// M MiB kept back): <advice>", request saying who needs it ("AIS with 100 runs needs").
inline void require_free_device_memory(size_t bytes, const std::string& request,
                                       const std::string& advice) {
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (bytes + kMemoryMargin > free_bytes) {
    throw InputError(request + " " + std::to_string(bytes >> 20) + " MiB of device memory and " +
                     std::to_string(free_bytes >> 20) + " MiB are free (with " +
                     std::to_string(kMemoryMargin >> 20) + " MiB kept back): " + advice);
  }
}

}  // namespace rbm::cuda
