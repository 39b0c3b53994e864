#pragma once
/// gprat::cuda::ExactGP<T>: the exact GP engine of gp/exact_gp.hpp on one CUDA device, for
/// T = float and double (one template, explicitly instantiated in cpp/src/cuda/exact_gp.cu).
/// Same mathematics (R&W Alg. 2.1 and the closed-form gradient; see gp/exact_gp.hpp):
///   K = k(X, X) + (sigma2 + jitter) I,  L = chol(K),  alpha = L^T \ (L \ y)
///   log p(y|X) = -1/2 y^T alpha - sum_i log L_ii - n/2 log(2 pi)
///   d log p / d theta_q = 1/2 tr((alpha alpha^T - K^{-1}) dK/dtheta_q)
///   mean = K* alpha,  V = L \ K*^T,  var = k(x*, x*) - colsum(V o V),  cov = K** - V^T V
/// Device residency: the lower tiles of K (then L, then K^{-1} in place during a training step),
/// X and alpha live in device memory from fit to destruction; a predict call reuses L.
/// Tiles are assembled on the device by the per-pair kernel code of kernels/ (tree_evaluate,
/// GPRAT_HOST_DEVICE): every kernel is run as its KernelTree (a single family is a one-leaf
/// tree, with the same theta), never a rewritten formula.
/// Scheduling: each tile kernel (cuSOLVER potrf/trtri, cuBLAS trsm/syrk/gemm/trmm/trsv/gemv, our
/// assembly and gradient kernels) is enqueued on one of several streams; dependencies are the
/// tile accesses (last writer, readers since), as in runtime/task_graph.hpp, turned into CUDA
/// events (cuda/stream_graph.hpp). The host synchronizes once per call, where potrf's info
/// array (one entry per diagonal tile, on the device) is read and checked.
/// Scope: one output, a learned noise variance, zero mean, jitter; the per-sample fixed noise,
/// several outputs, a constant mean and add_observations are CPU-only for now (refused with
/// BackendUnavailable naming the option).
/// Memory: the device's free memory is checked before each allocation (DeviceMemoryError).
/// Thread safety: calls take the model exclusively (one device context, one set of streams).
/// This header needs no CUDA headers: the bindings (compiled by the host compiler) include it.
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gprat/core/types.hpp"
#include "gprat/kernels/any_kernel.hpp"

namespace gprat::cuda {

/// Number of CUDA devices the runtime sees; 0 when there is no driver, no device or any error.
int device_count() noexcept;
/// Why device_count() is 0 ("" when a device is there): the CUDA runtime's error name and text.
std::string device_status();
/// "name, compute capability x.y, N MiB; driver D, runtime R" of device `device`.
std::string device_description(int device);

/// The Cholesky factorization of a fit or training step.
enum class CholeskyAlgorithm {
    Tiled,  ///< potrf/trsm/syrk/gemm per lower tile on several streams (no n x n storage)
    Whole   ///< one cusolverDnXpotrf on a dense n x n copy (twice the memory), tiles copied back
};

/// Seconds each phase of the last fit or training step took on the device (with profiling on;
/// phase boundaries then join the streams, which costs a little overlap).
struct PhaseTimes
{
    double assemble = 0, cholesky = 0, solve = 0, inverse = 0, gradient = 0, total = 0;
};

template <typename T>
class ExactGP
{
  public:
    /// @param X row-major (n, d), y (n): copied to the device (the host arrays are not kept).
    /// @param tile_size nb, or nullopt for the device rule (choose_device_tile_size); clamped to n.
    /// @param device the CUDA device index.  @param streams streams tiles are spread over (>= 1).
    /// @throws BackendUnavailable without the device; InvalidArgument for bad values.
    ExactGP(kernels::AnyKernel kernel, std::optional<double> noise_variance, const T* X, const T* y, Index n, Index d,
            std::optional<Index> tile_size, int device, int streams);
    ~ExactGP();
    ExactGP(const ExactGP&) = delete;
    ExactGP& operator=(const ExactGP&) = delete;

    Index n() const noexcept;
    Index d() const noexcept;
    Index tile_size() const noexcept;
    Index n_params() const;
    int device() const noexcept;
    int streams() const noexcept;
    kernels::AnyKernel kernel() const;
    double noise_variance() const;
    double jitter() const;
    void set_jitter(double jitter);
    std::vector<double> theta() const;
    void set_theta(std::span<const double> theta);
    CholeskyAlgorithm cholesky_algorithm() const;
    void set_cholesky_algorithm(CholeskyAlgorithm a);
    bool profiling() const;
    void set_profiling(bool on);
    PhaseTimes last_times() const;

    /// Assemble, factor and solve for alpha at the current theta.  @return the LML.
    /// @throws NotPositiveDefinite with the global order of the failing minor.
    double fit();
    double log_marginal_likelihood();
    /// LML at theta and, when gradient is not null, its gradient (n_params() entries); the
    /// model's own theta does not change (K^{-1} may take the factor's memory: predict refactors).
    double training_step(std::span<const double> theta, double* gradient);
    /// Posterior at m points Xs (row-major (m, d)); any output may be null.
    void predict(const T* Xs, Index m, T* mean, T* variance, T* covariance, bool include_noise);
    /// L as a dense row-major (n, n) array (upper part zero).
    void cholesky_factor(T* out);

    /// Device bytes the model holds once fitted: the lower tiles, X, y and alpha.
    static std::size_t fit_bytes(Index n, Index d, Index nb);
    /// Device bytes a training step adds: the gradient's per-block partial sums.
    static std::size_t training_step_bytes(Index n, Index nb, Index n_params);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Tile size on the device: large tiles keep cuBLAS/cuSOLVER efficient (nb = 1024 up to
/// n = 16384, then 2048), at most n. Measured choices go in benchmarks/device_check.sh.
Index choose_device_tile_size(Index n);

extern template class ExactGP<float>;
extern template class ExactGP<double>;

}  // namespace gprat::cuda
