/// The CUDA exact GP engine (interface and mathematics: cuda/exact_gp.hpp). One template over
/// T = float/double; the device kernels below call the per-pair kernel code of kernels/
/// (tree_evaluate) and nothing else computes a covariance.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <numbers>
#include <sstream>
#include <thread>
#include <variant>

#include "gprat/core/check.hpp"
#include "gprat/core/errors.hpp"
#include "gprat/cuda/check.hpp"
#include "gprat/cuda/device_kernels.cuh"
#include "gprat/cuda/exact_gp.hpp"
#include "gprat/cuda/stream_graph.hpp"
#include "gprat/kernels/kernel_tree.hpp"
#include "gprat/runtime/interrupt.hpp"

namespace gprat::cuda {

namespace {

using namespace device;

dim3 tile_grid(Index rows, Index cols, dim3 block)
{
    return dim3(static_cast<unsigned>((rows + block.x - 1) / block.x), static_cast<unsigned>((cols + block.y - 1) / block.y));
}

// ---------------------------------------------------------------------------------------------
// Host helpers

/// cudaSetDevice for the scope of one call; the caller's device is restored.
class DeviceGuard
{
  public:
    explicit DeviceGuard(int device)
    {
        GPRAT_CHECK_CUDA(cudaGetDevice(&previous_));
        GPRAT_CHECK_CUDA(cudaSetDevice(device));
    }
    ~DeviceGuard() { cudaSetDevice(previous_); }
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

  private:
    int previous_ = 0;
};

/// Device memory for `count` elements, after checking that the device has it free.
template <typename E>
class DeviceBuffer
{
  public:
    DeviceBuffer() = default;
    DeviceBuffer(std::size_t count, const char* what) : count_(count)
    {
        if (count == 0) return;
        const std::size_t bytes = count * sizeof(E);
        std::size_t free = 0, total = 0;
        GPRAT_CHECK_CUDA(cudaMemGetInfo(&free, &total));
        if (bytes > free) {
            int device = 0;
            cudaGetDevice(&device);
            std::ostringstream os;
            os << "not enough GPU memory for " << what << ": it needs " << (bytes >> 20) << " MiB and CUDA device "
               << device << " has " << (free >> 20) << " MiB free of " << (total >> 20)
               << " MiB; use a smaller n or m, float32, or device='cpu'";
            throw DeviceMemoryError(os.str());
        }
        GPRAT_CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&data_), bytes));
    }
    ~DeviceBuffer() { release(); }
    DeviceBuffer(DeviceBuffer&& o) noexcept : data_(o.data_), count_(o.count_) { o.data_ = nullptr, o.count_ = 0; }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept
    {
        if (this != &o) {
            release();
            data_ = o.data_, count_ = o.count_;
            o.data_ = nullptr, o.count_ = 0;
        }
        return *this;
    }
    E* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return count_; }

  private:
    void release() noexcept
    {
        if (data_) cudaFree(data_);
        data_ = nullptr;
    }
    E* data_ = nullptr;
    std::size_t count_ = 0;
};

/// Every kernel as its KernelTree: a single stationary family is a one-leaf tree with the same
/// parameters ([l..., s2]) in the same order, so theta and the gradient entries line up.
kernels::KernelTree as_tree(const kernels::AnyKernel& k)
{
    return std::visit(
        [](const auto& kern) -> kernels::KernelTree {
            using K = std::decay_t<decltype(kern)>;
            if constexpr (std::is_same_v<K, kernels::KernelTree>) {
                return kern;
            } else {
                kernels::TreeNodeSpec leaf;
                leaf.kind = kern.name();
                leaf.params = kern.lengthscale();
                leaf.params.push_back(kern.signal_variance());
                return kernels::KernelTree({leaf});
            }
        },
        k);
}

/// cuBLAS by precision.
template <typename T>
struct Blas;

#define GPRAT_BLAS_OVERLOADS(T, p)                                                                                   \
    template <>                                                                                                      \
    struct Blas<T>                                                                                                   \
    {                                                                                                                \
        static constexpr cudaDataType data_type = std::is_same_v<T, double> ? CUDA_R_64F : CUDA_R_32F;              \
        static void trsm(cublasHandle_t h, cublasSideMode_t s, cublasOperation_t t, Index m, Index n, T alpha,      \
                         const T* a, Index lda, T* b, Index ldb)                                                     \
        {                                                                                                            \
            GPRAT_CHECK_CUBLAS(cublas##p##trsm(h, s, CUBLAS_FILL_MODE_LOWER, t, CUBLAS_DIAG_NON_UNIT, int(m), int(n), \
                                               &alpha, a, int(lda), b, int(ldb)));                                   \
        }                                                                                                            \
        static void syrk(cublasHandle_t h, cublasOperation_t t, Index n, Index k, T alpha, const T* a, Index lda,   \
                         T beta, T* c, Index ldc)                                                                    \
        {                                                                                                            \
            GPRAT_CHECK_CUBLAS(cublas##p##syrk(h, CUBLAS_FILL_MODE_LOWER, t, int(n), int(k), &alpha, a, int(lda),    \
                                               &beta, c, int(ldc)));                                                 \
        }                                                                                                            \
        static void gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, Index m, Index n, Index k,   \
                         T alpha, const T* a, Index lda, const T* b, Index ldb, T beta, T* c, Index ldc)             \
        {                                                                                                            \
            GPRAT_CHECK_CUBLAS(cublas##p##gemm(h, ta, tb, int(m), int(n), int(k), &alpha, a, int(lda), b, int(ldb),  \
                                               &beta, c, int(ldc)));                                                 \
        }                                                                                                            \
        /* C <- alpha op(A) B with A lower; C may be B (cuBLAS's in-place form) */                                   \
        static void trmm(cublasHandle_t h, cublasOperation_t t, Index m, Index n, T alpha, const T* a, Index lda,   \
                         const T* b, Index ldb, T* c, Index ldc)                                                     \
        {                                                                                                            \
            GPRAT_CHECK_CUBLAS(cublas##p##trmm(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, t, CUBLAS_DIAG_NON_UNIT,  \
                                               int(m), int(n), &alpha, a, int(lda), b, int(ldb), c, int(ldc)));      \
        }                                                                                                            \
        static void trsv(cublasHandle_t h, cublasOperation_t t, Index n, const T* a, Index lda, T* x)               \
        {                                                                                                            \
            GPRAT_CHECK_CUBLAS(cublas##p##trsv(h, CUBLAS_FILL_MODE_LOWER, t, CUBLAS_DIAG_NON_UNIT, int(n), a,         \
                                               int(lda), x, 1));                                                     \
        }                                                                                                            \
        static void gemv(cublasHandle_t h, cublasOperation_t t, Index m, Index n, T alpha, const T* a, Index lda,   \
                         const T* x, T beta, T* y)                                                                   \
        {                                                                                                            \
            GPRAT_CHECK_CUBLAS(cublas##p##gemv(h, t, int(m), int(n), &alpha, a, int(lda), x, 1, &beta, y, 1));       \
        }                                                                                                            \
    };
GPRAT_BLAS_OVERLOADS(double, D)
GPRAT_BLAS_OVERLOADS(float, S)
#undef GPRAT_BLAS_OVERLOADS

constexpr cublasOperation_t N_ = CUBLAS_OP_N;
constexpr cublasOperation_t T_ = CUBLAS_OP_T;

/// Matrix ids of StreamGraph keys.
enum Matrix : int { K_tiles = 0, Alpha = 1, Partial = 2, LogDiag = 3 };

}  // namespace

int device_count() noexcept
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return count;
}

std::string device_status()
{
    int count = 0;
    const cudaError_t s = cudaGetDeviceCount(&count);
    if (s == cudaSuccess) return count > 0 ? "" : "the CUDA runtime reports no device";
    (void)cudaGetLastError();
    return std::string("cudaGetDeviceCount failed with ") + cudaGetErrorName(s) + ": " + cudaGetErrorString(s);
}

std::string device_description(int device)
{
    cudaDeviceProp p{};
    GPRAT_CHECK_CUDA(cudaGetDeviceProperties(&p, device));
    int driver = 0, runtime = 0;
    GPRAT_CHECK_CUDA(cudaDriverGetVersion(&driver));
    GPRAT_CHECK_CUDA(cudaRuntimeGetVersion(&runtime));
    std::ostringstream os;
    os << p.name << ", compute capability " << p.major << "." << p.minor << ", " << (p.totalGlobalMem >> 20)
       << " MiB, " << p.multiProcessorCount << " SMs; CUDA driver " << driver / 1000 << "." << (driver % 1000) / 10
       << ", runtime " << runtime / 1000 << "." << (runtime % 1000) / 10;
    return os.str();
}

Index choose_device_tile_size(Index n)
{
    GPRAT_EXPECTS(n >= 1, "n must be positive; got " << n);
    return std::min<Index>(n, n <= 16384 ? 1024 : 2048);
}

template <typename T>
struct ExactGP<T>::Impl
{
    Impl(kernels::AnyKernel k, std::optional<double> noise, const T* X, const T* y, Index n_, Index d_,
         std::optional<Index> tile, int dev, int n_streams)
        : kernel(std::move(k)), learned_noise(noise), n(n_), d(d_), device(dev)
    {
        GPRAT_EXPECTS(n >= 1 && d >= 1, "X must have at least one row and one column; got shape (" << n << ", " << d << ")");
        GPRAT_EXPECTS(!tile || *tile > 0, "tile_size must be a positive integer; got " << *tile);
        GPRAT_EXPECTS(n_streams >= 1 && n_streams <= 128, "streams must be in 1..128; got " << n_streams);
        if (learned_noise)
            GPRAT_EXPECTS(std::isfinite(*learned_noise) && *learned_noise > 0,
                          "noise_variance must be positive and finite; got " << *learned_noise);
        kernels::check_features(kernel, d);
        GPRAT_EXPECTS(kernels::kernel_params(kernel) + (learned_noise ? 1 : 0) <= max_device_params,
                      "the CUDA backend reduces at most " << max_device_params << " hyperparameters; this model has "
                                                          << kernels::kernel_params(kernel) + (learned_noise ? 1 : 0)
                                                          << "; use device='cpu'");
        const int count = device_count();
        if (device < 0 || device >= count)
            throw BackendUnavailable("CUDA device " + std::to_string(device) + " is not available: the CUDA runtime sees " +
                                     std::to_string(count) + " device(s)");
        nb = tile ? std::min(*tile, n) : choose_device_tile_size(n);
        nt = (n + nb - 1) / nb;
        try {
            initialize(X, y, n_streams);
        } catch (...) {
            release();  // the destructor does not run for a constructor that throws
            throw;
        }
    }

    void initialize(const T* X, const T* y, int n_streams)
    {
        DeviceGuard guard(device);
        streams.resize(static_cast<std::size_t>(n_streams));
        blas.resize(streams.size());
        solver.resize(streams.size());
        for (std::size_t s = 0; s < streams.size(); ++s) {
            GPRAT_CHECK_CUDA(cudaStreamCreateWithFlags(&streams[s], cudaStreamNonBlocking));
            GPRAT_CHECK_CUBLAS(cublasCreate(&blas[s]));
            GPRAT_CHECK_CUBLAS(cublasSetStream(blas[s], streams[s]));
            GPRAT_CHECK_CUSOLVER(cusolverDnCreate(&solver[s]));
            GPRAT_CHECK_CUSOLVER(cusolverDnSetStream(solver[s], streams[s]));
        }
        GPRAT_CHECK_CUSOLVER(cusolverDnCreateParams(&params));
        graph = std::make_unique<StreamGraph>(streams);
        // The big allocation first: a model that does not fit fails before anything else is made.
        Kt = DeviceBuffer<T>(tile_elements() * static_cast<std::size_t>(nt * (nt + 1) / 2), "the lower tiles of K");
        Xd = DeviceBuffer<T>(static_cast<std::size_t>(n * d), "X");
        yd = DeviceBuffer<T>(static_cast<std::size_t>(n), "y");
        alpha = DeviceBuffer<T>(static_cast<std::size_t>(n), "alpha");
        info = DeviceBuffer<int>(static_cast<std::size_t>(2 * nt), "the potrf/trtri info array");
        log_diag = DeviceBuffer<double>(static_cast<std::size_t>(nt), "the log-diagonal sums");
        // Workspaces of potrf and trtri on one nb x nb tile, one per stream (tasks of a stream are ordered).
        std::size_t dev_bytes = 0, host_bytes = 0, d2 = 0, h2 = 0;
        // (queried on a real tile: the size queries are not documented to accept a null matrix)
        GPRAT_CHECK_CUSOLVER(cusolverDnXpotrf_bufferSize(solver[0], params, CUBLAS_FILL_MODE_LOWER, nb, Blas<T>::data_type,
                                                         Kt.data(), nb, Blas<T>::data_type, &dev_bytes, &host_bytes));
        GPRAT_CHECK_CUSOLVER(cusolverDnXtrtri_bufferSize(solver[0], CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, nb,
                                                         Blas<T>::data_type, Kt.data(), nb, &d2, &h2));
        work_bytes = std::max<std::size_t>({dev_bytes, d2, 1});
        host_work_bytes = std::max<std::size_t>({host_bytes, h2, 1});
        for (std::size_t s = 0; s < streams.size(); ++s) {
            work.emplace_back(work_bytes, "the cuSOLVER workspaces");
            host_work.emplace_back(host_work_bytes);
            scratch.emplace_back(static_cast<std::size_t>(nb * nb), "the lauum scratch tiles");
        }
        GPRAT_CHECK_CUDA(cudaMemcpy(Xd.data(), X, sizeof(T) * static_cast<std::size_t>(n * d), cudaMemcpyHostToDevice));
        GPRAT_CHECK_CUDA(cudaMemcpy(yd.data(), y, sizeof(T) * static_cast<std::size_t>(n), cudaMemcpyHostToDevice));
        y_host.assign(y, y + n);
    }

    ~Impl() { release(); }

    /// Frees the streams and handles (buffers free themselves); safe on a half-built Impl.
    void release() noexcept
    {
        cudaSetDevice(device);
        for (cudaStream_t st : streams)
            if (st) cudaStreamSynchronize(st);
        graph.reset();
        for (cublasHandle_t h : blas)
            if (h) cublasDestroy(h);
        for (cusolverDnHandle_t h : solver)
            if (h) cusolverDnDestroy(h);
        if (params) cusolverDnDestroyParams(params);
        for (cudaEvent_t e : timing) cudaEventDestroy(e);
        for (cudaStream_t st : streams)
            if (st) cudaStreamDestroy(st);
        blas.clear(), solver.clear(), timing.clear(), streams.clear();
        params = nullptr;
    }

    /// After a failure with work in flight: let it finish (its errors are dropped: the first one
    /// is already being thrown) and forget the graph's state, so that the next call starts clean.
    void drain() noexcept
    {
        for (cudaStream_t st : streams) cudaStreamSynchronize(st);
        (void)cudaGetLastError();
        try {
            graph->wait();
        } catch (...) {
        }
    }

    std::size_t tile_elements() const { return static_cast<std::size_t>(nb * nb); }
    Index rows(Index i) const { return i + 1 < nt ? nb : n - (nt - 1) * nb; }
    Index row0(Index i) const { return i * nb; }
    T* tile(Index i, Index j) const
    {
        return Kt.data() + static_cast<std::size_t>(i * (i + 1) / 2 + j) * tile_elements();
    }
    Index noise_entries() const { return learned_noise ? 1 : 0; }
    Index n_params() const { return kernels::kernel_params(kernel) + noise_entries(); }

    std::vector<double> theta() const
    {
        std::vector<double> t = kernels::kernel_theta(kernel);
        if (learned_noise) t.push_back(std::log(*learned_noise));
        return t;
    }

    void check_theta(std::span<const double> t) const
    {
        GPRAT_EXPECTS(static_cast<Index>(t.size()) == n_params(),
                      "theta must have " << n_params() << " entries (log kernel hyperparameters"
                                         << (learned_noise ? ", log noise_variance" : "") << "); got " << t.size());
        for (double v : t)
            GPRAT_EXPECTS(std::isfinite(v) && std::abs(v) < 700.0,
                          "theta must be finite log-hyperparameters (|theta| < 700); got " << v);
    }

    bool factor_valid() const { return factor_holds_cholesky && factor_theta == theta() && factor_jitter == jitter; }

    /// Copy the tree of `k` to the device (one small synchronous copy per call).
    DeviceTree upload(const kernels::AnyKernel& k)
    {
        const kernels::KernelTree tree = as_tree(k);
        tree_nodes = DeviceBuffer<kernels::TreeNode>(tree.nodes().size(), "the kernel tree");
        tree_values = DeviceBuffer<double>(std::max<std::size_t>(tree.values().size(), 1), "the kernel tree");
        tree_dims = DeviceBuffer<Index>(std::max<std::size_t>(tree.dims().size(), 1), "the kernel tree");
        GPRAT_CHECK_CUDA(cudaMemcpy(tree_nodes.data(), tree.nodes().data(), sizeof(kernels::TreeNode) * tree.nodes().size(),
                                    cudaMemcpyHostToDevice));
        if (!tree.values().empty())
            GPRAT_CHECK_CUDA(cudaMemcpy(tree_values.data(), tree.values().data(), sizeof(double) * tree.values().size(),
                                        cudaMemcpyHostToDevice));
        if (!tree.dims().empty())
            GPRAT_CHECK_CUDA(cudaMemcpy(tree_dims.data(), tree.dims().data(), sizeof(Index) * tree.dims().size(),
                                        cudaMemcpyHostToDevice));
        return DeviceTree{tree_nodes.data(), tree.n_nodes(), tree_values.data(), tree_dims.data()};
    }

    /// A device-side join of the streams, timed when profiling.
    void phase_mark()
    {
        if (!profile) return;
        cudaEvent_t e = nullptr;
        if (timing_used < timing.size()) {
            e = timing[timing_used];
        } else {
            GPRAT_CHECK_CUDA(cudaEventCreate(&e));
            timing.push_back(e);
        }
        ++timing_used;
        graph->barrier(e);
    }

    /// Wait for the device, polling the interrupt check (Ctrl-C) every millisecond; an interrupt
    /// lets the enqueued work finish (it cannot be recalled) and throws Cancelled.
    void wait_for_device()
    {
        const runtime::InterruptCheck check = runtime::current_interrupt_check();
        bool interrupted = false;
        for (cudaStream_t st : streams) {
            for (;;) {
                const cudaError_t s = cudaStreamQuery(st);
                if (s == cudaSuccess) break;
                if (s != cudaErrorNotReady) GPRAT_CHECK_CUDA(s);
                if (!interrupted && check != nullptr && check()) interrupted = true;
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
        }
        graph->wait();
        if (interrupted) throw Cancelled("interrupted: the CUDA work of this call was discarded");
    }

    /// potrf/trsm/syrk/gemm per lower tile (linalg/cholesky.hpp's loop), potrf info into info[k].
    void tiled_cholesky()
    {
        using B = Blas<T>;
        for (Index k = 0; k < nt; ++k) {
            graph->add({}, {{K_tiles, k, k}}, [&, k](int s) {  // A(k,k) <- chol(A(k,k))
                GPRAT_CHECK_CUSOLVER(cusolverDnXpotrf(solver[s], params, CUBLAS_FILL_MODE_LOWER, rows(k), B::data_type,
                                                      tile(k, k), nb, B::data_type, work[s].data(), work_bytes,
                                                      host_work[s].data(), host_work_bytes, info.data() + k));
            });
            for (Index m = k + 1; m < nt; ++m)  // A(m,k) <- A(m,k) A(k,k)^{-T}
                graph->add({{K_tiles, k, k}}, {{K_tiles, m, k}}, [&, k, m](int s) {
                    B::trsm(blas[s], CUBLAS_SIDE_RIGHT, T_, rows(m), rows(k), T(1), tile(k, k), nb, tile(m, k), nb);
                });
            for (Index m = k + 1; m < nt; ++m) {
                graph->add({{K_tiles, m, k}}, {{K_tiles, m, m}}, [&, k, m](int s) {  // A(m,m) -= A(m,k) A(m,k)^T
                    B::syrk(blas[s], N_, rows(m), rows(k), T(-1), tile(m, k), nb, T(1), tile(m, m), nb);
                });
                for (Index j = k + 1; j < m; ++j)  // A(m,j) -= A(m,k) A(j,k)^T
                    graph->add({{K_tiles, m, k}, {K_tiles, j, k}}, {{K_tiles, m, j}}, [&, k, m, j](int s) {
                        B::gemm(blas[s], N_, T_, rows(m), rows(j), rows(k), T(-1), tile(m, k), nb, tile(j, k), nb, T(1),
                                tile(m, j), nb);
                    });
            }
        }
    }

    /// One cusolverDnXpotrf on a dense n x n copy, then the lower tiles from it (info[0] is the
    /// global order). The dense buffer is returned: it must live until the next wait.
    DeviceBuffer<T> whole_cholesky(const DeviceTree& tree, double diag)
    {
        using B = Blas<T>;
        DeviceBuffer<T> dense(static_cast<std::size_t>(n) * static_cast<std::size_t>(n),
                              "the dense n x n matrix of the whole-matrix Cholesky");
        std::size_t dev_bytes = 0, host_bytes = 0;
        GPRAT_CHECK_CUSOLVER(cusolverDnXpotrf_bufferSize(solver[0], params, CUBLAS_FILL_MODE_LOWER, n, B::data_type,
                                                         dense.data(), n, B::data_type, &dev_bytes, &host_bytes));
        whole_work = DeviceBuffer<unsigned char>(std::max<std::size_t>(dev_bytes, 1), "the cuSOLVER workspace");
        whole_host_work.assign(std::max<std::size_t>(host_bytes, 1), 0);
        graph->barrier();
        cudaStream_t st = streams[0];
        const dim3 block(32, 8);
        assemble_kernel<T><<<tile_grid(n, n, block), block, 0, st>>>(dense.data(), n, n, n, Xd.data(), 0, Xd.data(), 0,
                                                                      d, tree, true, diag);
        GPRAT_CHECK_LAUNCH();
        GPRAT_CHECK_CUSOLVER(cusolverDnXpotrf(solver[0], params, CUBLAS_FILL_MODE_LOWER, n, B::data_type, dense.data(), n,
                                              B::data_type, whole_work.data(), dev_bytes, whole_host_work.data(),
                                              host_bytes, info.data()));
        for (Index j = 0; j < nt; ++j)
            for (Index i = j; i < nt; ++i) {
                copy_from_dense_kernel<T><<<tile_grid(rows(i), rows(j), block), block, 0, st>>>(
                    tile(i, j), nb, rows(i), rows(j), dense.data(), n, row0(i), row0(j));
                GPRAT_CHECK_LAUNCH();
            }
        graph->barrier();
        return dense;
    }

    /// alpha <- L \ alpha (op N) or L^T \ alpha (op T), tile by tile (linalg/triangular_solve.hpp).
    void solve_vector(cublasOperation_t op)
    {
        using B = Blas<T>;
        if (op == N_) {
            for (Index k = 0; k < nt; ++k) {
                graph->add({{K_tiles, k, k}}, {{Alpha, k, 0}}, [&, k](int s) {  // a_k <- L_kk^{-1} a_k
                    B::trsv(blas[s], N_, rows(k), tile(k, k), nb, alpha.data() + row0(k));
                });
                for (Index m = k + 1; m < nt; ++m)  // a_m -= L_mk a_k
                    graph->add({{K_tiles, m, k}, {Alpha, k, 0}}, {{Alpha, m, 0}}, [&, k, m](int s) {
                        B::gemv(blas[s], N_, rows(m), rows(k), T(-1), tile(m, k), nb, alpha.data() + row0(k), T(1),
                                alpha.data() + row0(m));
                    });
            }
        } else {
            for (Index k = nt - 1; k >= 0; --k) {
                graph->add({{K_tiles, k, k}}, {{Alpha, k, 0}}, [&, k](int s) {  // a_k <- L_kk^{-T} a_k
                    B::trsv(blas[s], T_, rows(k), tile(k, k), nb, alpha.data() + row0(k));
                });
                for (Index m = 0; m < k; ++m)  // a_m -= L_km^T a_k
                    graph->add({{K_tiles, k, m}, {Alpha, k, 0}}, {{Alpha, m, 0}}, [&, k, m](int s) {
                        B::gemv(blas[s], T_, rows(k), rows(m), T(-1), tile(k, m), nb, alpha.data() + row0(k), T(1),
                                alpha.data() + row0(m));
                    });
            }
        }
    }

    /// K <- K^{-1} in place from L: tiled trtri, then tiled lauum (linalg/inverse.hpp, same loops).
    void spd_inverse()
    {
        using B = Blas<T>;
        for (Index k = 0; k < nt; ++k) {
            for (Index m = k + 1; m < nt; ++m)  // A(m,k) <- -A(m,k) A(k,k)^{-1}
                graph->add({{K_tiles, k, k}}, {{K_tiles, m, k}}, [&, k, m](int s) {
                    B::trsm(blas[s], CUBLAS_SIDE_RIGHT, N_, rows(m), rows(k), T(-1), tile(k, k), nb, tile(m, k), nb);
                });
            for (Index m = k + 1; m < nt; ++m)
                for (Index j = 0; j < k; ++j)  // A(m,j) <- A(m,j) + A(m,k) A(k,j)
                    graph->add({{K_tiles, m, k}, {K_tiles, k, j}}, {{K_tiles, m, j}}, [&, k, m, j](int s) {
                        B::gemm(blas[s], N_, N_, rows(m), rows(j), rows(k), T(1), tile(m, k), nb, tile(k, j), nb, T(1),
                                tile(m, j), nb);
                    });
            for (Index j = 0; j < k; ++j)  // A(k,j) <- A(k,k)^{-1} A(k,j)
                graph->add({{K_tiles, k, k}}, {{K_tiles, k, j}}, [&, k, j](int s) {
                    B::trsm(blas[s], CUBLAS_SIDE_LEFT, N_, rows(k), rows(j), T(1), tile(k, k), nb, tile(k, j), nb);
                });
            graph->add({}, {{K_tiles, k, k}}, [&, k](int s) {  // A(k,k) <- A(k,k)^{-1}
                GPRAT_CHECK_CUSOLVER(cusolverDnXtrtri(solver[s], CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, rows(k),
                                                      B::data_type, tile(k, k), nb, work[s].data(), work_bytes,
                                                      host_work[s].data(), host_work_bytes, info.data() + nt + k));
            });
        }
        for (Index k = 0; k < nt; ++k) {
            for (Index j = 0; j < k; ++j) {
                graph->add({{K_tiles, k, j}}, {{K_tiles, j, j}}, [&, k, j](int s) {  // A(j,j) += A(k,j)^T A(k,j)
                    B::syrk(blas[s], T_, rows(j), rows(k), T(1), tile(k, j), nb, T(1), tile(j, j), nb);
                });
                for (Index m = j + 1; m < k; ++m)  // A(m,j) += A(k,m)^T A(k,j)
                    graph->add({{K_tiles, k, m}, {K_tiles, k, j}}, {{K_tiles, m, j}}, [&, k, m, j](int s) {
                        B::gemm(blas[s], T_, N_, rows(m), rows(j), rows(k), T(1), tile(k, m), nb, tile(k, j), nb, T(1),
                                tile(m, j), nb);
                    });
            }
            for (Index j = 0; j < k; ++j)  // A(k,j) <- A(k,k)^T A(k,j)
                graph->add({{K_tiles, k, k}}, {{K_tiles, k, j}}, [&, k, j](int s) {
                    B::trmm(blas[s], T_, rows(k), rows(j), T(1), tile(k, k), nb, tile(k, j), nb, tile(k, j), nb);
                });
            graph->add({}, {{K_tiles, k, k}}, [&, k](int s) {  // A(k,k) <- A(k,k)^T A(k,k) (lauum)
                const dim3 block(32, 8);
                zero_upper_kernel<T><<<tile_grid(rows(k), rows(k), block), block, 0, streams[s]>>>(tile(k, k), nb, rows(k));
                GPRAT_CHECK_LAUNCH();
                GPRAT_CHECK_CUDA(cudaMemcpyAsync(scratch[s].data(), tile(k, k), sizeof(T) * tile_elements(),
                                                 cudaMemcpyDeviceToDevice, streams[s]));
                B::trmm(blas[s], T_, rows(k), rows(k), T(1), scratch[s].data(), nb, tile(k, k), nb, tile(k, k), nb);
            });
        }
    }

    /// Throws NotPositiveDefinite for the first diagonal tile whose potrf failed (its global order).
    void check_info(bool whole, bool inverse)
    {
        std::vector<int> h(static_cast<std::size_t>(2 * nt));
        GPRAT_CHECK_CUDA(cudaMemcpy(h.data(), info.data(), sizeof(int) * h.size(), cudaMemcpyDeviceToHost));
        for (Index k = 0; k < (whole ? 1 : nt); ++k) {
            const int v = h[static_cast<std::size_t>(k)];
            if (v > 0) throw NotPositiveDefinite((whole ? 0 : row0(k)) + v);
            if (v < 0) throw CudaError("cusolverDnXpotrf reported illegal argument " + std::to_string(-v));
        }
        if (inverse)
            for (Index k = 0; k < nt; ++k)
                if (h[static_cast<std::size_t>(nt + k)] != 0)
                    throw CudaError("cusolverDnXtrtri failed on diagonal tile " + std::to_string(k) + " with info " +
                                    std::to_string(h[static_cast<std::size_t>(nt + k)]));
    }

    /// The whole call of fit / training_step: assemble, factor, alpha, log det, and with a
    /// gradient K^{-1} in place and the fused pass; one host synchronization at the end.
    double factorize(const std::vector<double>& th, double* gradient)
    {
        DeviceGuard guard(device);
        try {
            return factorize_body(th, gradient);
        } catch (...) {
            drain();
            throw;
        }
    }

    double factorize_body(const std::vector<double>& th, double* gradient)
    {
        const Index kp = kernels::kernel_params(kernel);
        const kernels::AnyKernel k = kernels::kernel_with_theta(kernel, std::span(th).first(static_cast<std::size_t>(kp)));
        const std::optional<double> learned =
            learned_noise ? std::optional<double>(std::exp(th[static_cast<std::size_t>(kp)])) : std::nullopt;
        const double diag = learned.value_or(0.0) + jitter;
        factor_holds_cholesky = false;
        const DeviceTree tree = upload(k);
        const Index P = kp + noise_entries();
        const std::size_t slots = static_cast<std::size_t>(nt * (nt + 1) / 2);
        DeviceBuffer<double> partial;
        if (gradient) partial = DeviceBuffer<double>(slots * gradient_blocks * static_cast<std::size_t>(P), "the gradient partial sums");
        GPRAT_CHECK_CUDA(cudaMemsetAsync(info.data(), 0, sizeof(int) * static_cast<std::size_t>(2 * nt), streams[0]));
        GPRAT_CHECK_CUDA(cudaStreamSynchronize(streams[0]));
        timing_used = 0;
        phase_mark();
        DeviceBuffer<T> dense;
        const bool whole = algorithm == CholeskyAlgorithm::Whole;
        const dim3 block(32, 8);
        if (whole) {
            phase_mark();  // no separate assembly phase: the dense matrix is assembled in one launch
            dense = whole_cholesky(tree, diag);
        } else {
            for (Index j = 0; j < nt; ++j)
                for (Index i = j; i < nt; ++i)  // K(i,j) = k(X_i, X_j) (+ diag on the global diagonal)
                    graph->add({}, {{K_tiles, i, j}}, [&, i, j](int s) {
                        assemble_kernel<T><<<tile_grid(rows(i), rows(j), block), block, 0, streams[s]>>>(
                            tile(i, j), nb, rows(i), rows(j), Xd.data(), row0(i), Xd.data(), row0(j), d, tree, true, diag);
                    });
            phase_mark();
            tiled_cholesky();
        }
        phase_mark();
        for (Index i = 0; i < nt; ++i)  // alpha <- y
            graph->add({}, {{Alpha, i, 0}}, [&, i](int s) {
                GPRAT_CHECK_CUDA(cudaMemcpyAsync(alpha.data() + row0(i), yd.data() + row0(i), sizeof(T) * rows(i),
                                                 cudaMemcpyDeviceToDevice, streams[s]));
            });
        solve_vector(N_);  // alpha <- L \ y
        solve_vector(T_);  // alpha <- L^T \ alpha
        for (Index i = 0; i < nt; ++i)  // log_diag[i] = sum log L_jj over diagonal tile i
            graph->add({{K_tiles, i, i}}, {{LogDiag, i, 0}}, [&, i](int s) {
                log_diagonal_kernel<T><<<1, 256, 0, streams[s]>>>(tile(i, i), nb, rows(i), log_diag.data() + i);
            });
        phase_mark();
        std::vector<int> blocks_used;
        if (gradient) {
            spd_inverse();  // K <- K^{-1}
            phase_mark();
            const double sigma2 = learned.value_or(0.0);
            std::size_t slot = 0;
            for (Index j = 0; j < nt; ++j)
                for (Index i = j; i < nt; ++i, ++slot) {
                    const Index entries = rows(i) * rows(j);
                    const int g = static_cast<int>(std::min<Index>(gradient_blocks, (entries + gradient_threads - 1) / gradient_threads));
                    blocks_used.push_back(g);
                    double* out = partial.data() + slot * gradient_blocks * static_cast<std::size_t>(P);
                    graph->add({{K_tiles, i, j}, {Alpha, i, 0}, {Alpha, j, 0}}, {{Partial, i, j}}, [&, i, j, g, out, sigma2](int s) {
                        gradient_kernel<T><<<g, gradient_threads, 0, streams[s]>>>(
                            tile(i, j), nb, rows(i), rows(j), alpha.data(), Xd.data(), row0(i), row0(j), d, tree,
                            static_cast<int>(kp), static_cast<int>(noise_entries()), sigma2, out);
                    });
                }
        }
        phase_mark();
        wait_for_device();
        check_info(whole, gradient != nullptr);
        record_times(whole, gradient != nullptr);

        std::vector<T> a(static_cast<std::size_t>(n));
        std::vector<double> ld(static_cast<std::size_t>(nt));
        GPRAT_CHECK_CUDA(cudaMemcpy(a.data(), alpha.data(), sizeof(T) * a.size(), cudaMemcpyDeviceToHost));
        GPRAT_CHECK_CUDA(cudaMemcpy(ld.data(), log_diag.data(), sizeof(double) * ld.size(), cudaMemcpyDeviceToHost));
        double y_alpha = 0.0, log_det = 0.0;
        for (Index r = 0; r < n; ++r)
            y_alpha += static_cast<double>(y_host[static_cast<std::size_t>(r)]) * static_cast<double>(a[static_cast<std::size_t>(r)]);
        for (double v : ld) log_det += 2.0 * v;
        const double lml = -0.5 * y_alpha - 0.5 * log_det - 0.5 * static_cast<double>(n) * std::log(2.0 * std::numbers::pi);
        if (gradient) {
            std::vector<double> h(partial.size());
            GPRAT_CHECK_CUDA(cudaMemcpy(h.data(), partial.data(), sizeof(double) * h.size(), cudaMemcpyDeviceToHost));
            for (Index q = 0; q < P; ++q) gradient[q] = 0.0;
            for (std::size_t s = 0; s < slots; ++s)
                for (int b = 0; b < blocks_used[s]; ++b)
                    for (Index q = 0; q < P; ++q)
                        gradient[q] += h[(s * gradient_blocks + static_cast<std::size_t>(b)) * static_cast<std::size_t>(P) +
                                         static_cast<std::size_t>(q)];
            for (Index q = 0; q < P; ++q) gradient[q] *= 0.5;
        } else {
            factor_holds_cholesky = true;
            factor_theta = th;
            factor_jitter = jitter;
            lml_value = lml;
        }
        return lml;
    }

    void record_times(bool whole, bool gradient)
    {
        if (!profile || timing_used < 2) return;
        std::vector<float> ms(timing_used - 1, 0.0f);
        for (std::size_t i = 0; i + 1 < timing_used; ++i)
            GPRAT_CHECK_CUDA(cudaEventElapsedTime(&ms[i], timing[i], timing[i + 1]));
        // marks: start | assemble | cholesky | solve | (inverse | gradient) | end
        times = PhaseTimes{};
        times.assemble = ms[0] / 1e3;
        times.cholesky = ms.size() > 1 ? ms[1] / 1e3 : 0;
        times.solve = ms.size() > 2 ? ms[2] / 1e3 : 0;
        if (gradient) {
            times.inverse = ms.size() > 3 ? ms[3] / 1e3 : 0;
            times.gradient = ms.size() > 4 ? ms[4] / 1e3 : 0;
        }
        (void)whole;
        for (float v : ms) times.total += v / 1e3;
    }

    void ensure_factor()
    {
        if (!factor_valid()) factorize(theta(), nullptr);
    }

    void predict(const T* Xs, Index m, T* mean, T* variance, T* covariance, bool include_noise)
    {
        GPRAT_EXPECTS(m >= 1, "Xs must have at least one row; got 0");
        ensure_factor();
        DeviceGuard guard(device);
        try {
            predict_body(Xs, m, mean, variance, covariance, include_noise);
        } catch (...) {
            drain();
            throw;
        }
    }

    void predict_body(const T* Xs, Index m, T* mean, T* variance, T* covariance, bool include_noise)
    {
        using B = Blas<T>;
        const DeviceTree tree = upload(kernel);
        const double noise = include_noise ? learned_noise.value_or(0.0) : 0.0;
        const bool solve = variance != nullptr || covariance != nullptr;
        // K*^T for `chunk` test points at a time: all m with a covariance (K** - V^T V needs V whole).
        std::size_t free = 0, total = 0;
        GPRAT_CHECK_CUDA(cudaMemGetInfo(&free, &total));
        const std::size_t budget = std::min<std::size_t>(free / 2, std::size_t(4) << 30);
        const Index fit_cols = std::max<Index>(1, static_cast<Index>(budget / (sizeof(T) * static_cast<std::size_t>(n))));
        const Index chunk = covariance ? m : std::min(m, fit_cols);
        const Index S = static_cast<Index>(streams.size());
        DeviceBuffer<T> Kst(static_cast<std::size_t>(n) * static_cast<std::size_t>(chunk), "K*^T (n x test points)");
        DeviceBuffer<T> Zd(static_cast<std::size_t>(chunk * d), "the test points");
        DeviceBuffer<T> mean_d(static_cast<std::size_t>(chunk), "the predictive mean");
        DeviceBuffer<T> var_d(variance ? static_cast<std::size_t>(chunk) : 0, "the predictive variance");
        DeviceBuffer<T> cov_d(covariance ? static_cast<std::size_t>(m) * static_cast<std::size_t>(m) : 0,
                              "the predictive covariance (m x m)");
        const dim3 block(32, 8);
        for (Index s0 = 0; s0 < m; s0 += chunk) {
            const Index mc = std::min(chunk, m - s0);
            GPRAT_CHECK_CUDA(cudaMemcpy(Zd.data(), Xs + s0 * d, sizeof(T) * static_cast<std::size_t>(mc * d), cudaMemcpyHostToDevice));
            // column blocks of K*^T: one independent chain per block, blocks spread over the streams
            const Index cb = std::max<Index>(std::min<Index>(mc, 256), (mc + S - 1) / S);
            for (Index c0 = 0, b = 0; c0 < mc; c0 += cb, ++b) {
                const Index cols = std::min(cb, mc - c0);
                const int s = static_cast<int>(b % S);
                cudaStream_t st = streams[static_cast<std::size_t>(s)];
                T* V = Kst.data() + c0 * n;
                assemble_kernel<T><<<tile_grid(n, cols, block), block, 0, st>>>(V, n, n, cols, Xd.data(), 0, Zd.data(), c0,
                                                                              d, tree, false, 0.0);  // K*^T = k(X, Xs)
                GPRAT_CHECK_LAUNCH();
                B::gemv(blas[s], T_, n, cols, T(1), V, n, alpha.data(), T(0), mean_d.data() + c0);  // mean = K* alpha
                if (solve)
                    for (Index k = 0; k < nt; ++k) {  // V = L \ K*^T, by tile rows
                        B::trsm(blas[s], CUBLAS_SIDE_LEFT, N_, rows(k), cols, T(1), tile(k, k), nb, V + row0(k), n);
                        for (Index i = k + 1; i < nt; ++i)
                            B::gemm(blas[s], N_, N_, rows(i), cols, rows(k), T(-1), tile(i, k), nb, V + row0(k), n, T(1),
                                    V + row0(i), n);
                    }
                if (variance) {  // var = k(x*, x*) + noise - colsum(V o V)
                    variance_kernel<T><<<static_cast<unsigned>(cols), 256, 0, st>>>(V, n, Zd.data(), c0, d, tree, noise, true,
                                                                                  var_d.data());
                    GPRAT_CHECK_LAUNCH();
                }
            }
            if (covariance) {  // cov = K** + noise I - V^T V (lower), on stream 0 after every block
                graph->barrier();
                assemble_kernel<T><<<tile_grid(m, m, block), block, 0, streams[0]>>>(cov_d.data(), m, m, m, Zd.data(), 0,
                                                                                   Zd.data(), 0, d, tree, true, noise);
                GPRAT_CHECK_LAUNCH();
                B::syrk(blas[0], T_, m, n, T(-1), Kst.data(), n, T(1), cov_d.data(), m);
            }
            wait_for_device();
            if (mean) GPRAT_CHECK_CUDA(cudaMemcpy(mean + s0, mean_d.data(), sizeof(T) * mc, cudaMemcpyDeviceToHost));
            if (variance) {
                GPRAT_CHECK_CUDA(cudaMemcpy(variance + s0, var_d.data(), sizeof(T) * mc, cudaMemcpyDeviceToHost));
                for (Index r = 0; r < mc; ++r) variance[s0 + r] = std::max(variance[s0 + r], T(0));
            }
        }
        if (covariance) {  // column-major lower -> row-major, mirrored
            std::vector<T> c(static_cast<std::size_t>(m) * static_cast<std::size_t>(m));
            GPRAT_CHECK_CUDA(cudaMemcpy(c.data(), cov_d.data(), sizeof(T) * c.size(), cudaMemcpyDeviceToHost));
            for (Index j = 0; j < m; ++j)
                for (Index i = j; i < m; ++i) {
                    const T v = c[static_cast<std::size_t>(i + j * m)];
                    covariance[i * m + j] = v;
                    covariance[j * m + i] = v;
                }
        }
    }

    void cholesky_factor(T* out)
    {
        ensure_factor();
        DeviceGuard guard(device);
        std::vector<T> t(tile_elements());
        for (Index j = 0; j < nt; ++j)
            for (Index i = j; i < nt; ++i) {
                GPRAT_CHECK_CUDA(cudaMemcpy(t.data(), tile(i, j), sizeof(T) * t.size(), cudaMemcpyDeviceToHost));
                for (Index c = 0; c < rows(j); ++c)
                    for (Index r = 0; r < rows(i); ++r) {
                        const Index gi = row0(i) + r, gj = row0(j) + c;
                        out[gi * n + gj] = gi >= gj ? t[static_cast<std::size_t>(r + c * nb)] : T(0);
                        if (i != j) out[gj * n + gi] = T(0);
                    }
            }
    }

    kernels::AnyKernel kernel;
    std::optional<double> learned_noise;
    double jitter = 0.0;
    Index n, d, nb = 1, nt = 1;
    int device;
    CholeskyAlgorithm algorithm = CholeskyAlgorithm::Tiled;
    bool profile = false;
    PhaseTimes times;

    std::vector<cudaStream_t> streams;
    std::vector<cublasHandle_t> blas;
    std::vector<cusolverDnHandle_t> solver;
    cusolverDnParams_t params = nullptr;
    std::unique_ptr<StreamGraph> graph;
    std::size_t work_bytes = 0, host_work_bytes = 0;
    std::vector<DeviceBuffer<unsigned char>> work;
    std::vector<std::vector<unsigned char>> host_work;
    std::vector<DeviceBuffer<T>> scratch;
    DeviceBuffer<unsigned char> whole_work;
    std::vector<unsigned char> whole_host_work;
    std::vector<cudaEvent_t> timing;
    std::size_t timing_used = 0;

    DeviceBuffer<T> Kt, Xd, yd, alpha;
    DeviceBuffer<int> info;
    DeviceBuffer<double> log_diag;
    DeviceBuffer<kernels::TreeNode> tree_nodes;
    DeviceBuffer<double> tree_values;
    DeviceBuffer<Index> tree_dims;
    std::vector<T> y_host;

    bool factor_holds_cholesky = false;
    std::vector<double> factor_theta;
    double factor_jitter = 0.0;
    double lml_value = 0.0;
    mutable std::mutex mutex;
};

template <typename T>
ExactGP<T>::ExactGP(kernels::AnyKernel kernel, std::optional<double> noise_variance, const T* X, const T* y, Index n,
                    Index d, std::optional<Index> tile_size, int device, int streams)
    : impl_(std::make_unique<Impl>(std::move(kernel), noise_variance, X, y, n, d, tile_size, device, streams))
{}

template <typename T>
ExactGP<T>::~ExactGP() = default;

template <typename T> Index ExactGP<T>::n() const noexcept { return impl_->n; }
template <typename T> Index ExactGP<T>::d() const noexcept { return impl_->d; }
template <typename T> Index ExactGP<T>::tile_size() const noexcept { return impl_->nb; }
template <typename T> int ExactGP<T>::device() const noexcept { return impl_->device; }
template <typename T> int ExactGP<T>::streams() const noexcept { return static_cast<int>(impl_->streams.size()); }

template <typename T>
Index ExactGP<T>::n_params() const
{
    std::lock_guard lock(impl_->mutex);
    return impl_->n_params();
}
template <typename T>
kernels::AnyKernel ExactGP<T>::kernel() const
{
    std::lock_guard lock(impl_->mutex);
    return impl_->kernel;
}
template <typename T>
double ExactGP<T>::noise_variance() const
{
    std::lock_guard lock(impl_->mutex);
    return impl_->learned_noise.value_or(0.0);
}
template <typename T>
double ExactGP<T>::jitter() const
{
    std::lock_guard lock(impl_->mutex);
    return impl_->jitter;
}
template <typename T>
void ExactGP<T>::set_jitter(double jitter)
{
    GPRAT_EXPECTS(std::isfinite(jitter) && jitter >= 0, "jitter must be finite and >= 0; got " << jitter);
    std::lock_guard lock(impl_->mutex);
    impl_->jitter = jitter;
}
template <typename T>
std::vector<double> ExactGP<T>::theta() const
{
    std::lock_guard lock(impl_->mutex);
    return impl_->theta();
}
template <typename T>
void ExactGP<T>::set_theta(std::span<const double> theta)
{
    std::lock_guard lock(impl_->mutex);
    impl_->check_theta(theta);
    const Index kp = kernels::kernel_params(impl_->kernel);
    impl_->kernel = kernels::kernel_with_theta(impl_->kernel, theta.first(static_cast<std::size_t>(kp)));
    if (impl_->learned_noise) impl_->learned_noise = std::exp(theta[static_cast<std::size_t>(kp)]);
}
template <typename T>
CholeskyAlgorithm ExactGP<T>::cholesky_algorithm() const
{
    std::lock_guard lock(impl_->mutex);
    return impl_->algorithm;
}
template <typename T>
void ExactGP<T>::set_cholesky_algorithm(CholeskyAlgorithm a)
{
    std::lock_guard lock(impl_->mutex);
    impl_->algorithm = a;
    impl_->factor_holds_cholesky = false;
}
template <typename T>
bool ExactGP<T>::profiling() const
{
    std::lock_guard lock(impl_->mutex);
    return impl_->profile;
}
template <typename T>
void ExactGP<T>::set_profiling(bool on)
{
    std::lock_guard lock(impl_->mutex);
    impl_->profile = on;
}
template <typename T>
PhaseTimes ExactGP<T>::last_times() const
{
    std::lock_guard lock(impl_->mutex);
    return impl_->times;
}
template <typename T>
double ExactGP<T>::fit()
{
    std::lock_guard lock(impl_->mutex);
    return impl_->factorize(impl_->theta(), nullptr);
}
template <typename T>
double ExactGP<T>::log_marginal_likelihood()
{
    std::lock_guard lock(impl_->mutex);
    if (impl_->factor_valid()) return impl_->lml_value;
    return impl_->factorize(impl_->theta(), nullptr);
}
template <typename T>
double ExactGP<T>::training_step(std::span<const double> theta, double* gradient)
{
    std::lock_guard lock(impl_->mutex);
    impl_->check_theta(theta);
    return impl_->factorize(std::vector<double>(theta.begin(), theta.end()), gradient);
}
template <typename T>
void ExactGP<T>::predict(const T* Xs, Index m, T* mean, T* variance, T* covariance, bool include_noise)
{
    std::lock_guard lock(impl_->mutex);
    impl_->predict(Xs, m, mean, variance, covariance, include_noise);
}
template <typename T>
void ExactGP<T>::cholesky_factor(T* out)
{
    std::lock_guard lock(impl_->mutex);
    impl_->cholesky_factor(out);
}

template <typename T>
std::size_t ExactGP<T>::fit_bytes(Index n, Index d, Index nb)
{
    GPRAT_EXPECTS(n >= 1 && d >= 1 && nb >= 1, "n, d and tile_size must be positive; got " << n << ", " << d << ", " << nb);
    nb = std::min(nb, n);
    const std::size_t nt = static_cast<std::size_t>((n + nb - 1) / nb);
    return sizeof(T) * (nt * (nt + 1) / 2 * static_cast<std::size_t>(nb * nb) + static_cast<std::size_t>(n * d + 2 * n)) +
           nt * (2 * sizeof(int) + sizeof(double));
}

template <typename T>
std::size_t ExactGP<T>::training_step_bytes(Index n, Index nb, Index n_params)
{
    GPRAT_EXPECTS(n >= 1 && nb >= 1 && n_params >= 1, "n, tile_size and n_params must be positive");
    nb = std::min(nb, n);
    const std::size_t nt = static_cast<std::size_t>((n + nb - 1) / nb);
    return nt * (nt + 1) / 2 * gradient_blocks * static_cast<std::size_t>(n_params) * sizeof(double);
}

template class ExactGP<float>;
template class ExactGP<double>;

}  // namespace gprat::cuda
