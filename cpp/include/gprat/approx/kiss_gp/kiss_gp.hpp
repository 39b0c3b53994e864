#pragma once
/// KISS-GP (Wilson & Nickisch 2015) with GPyTorch's BBMM solves (Gardner et al. 2018):
///   K~ = W K_UU W^T + sigma2 I,  K_UU = s0 (T_0 (x) .. (x) T_{d-1})   (grid.hpp, kronecker_toeplitz.hpp)
/// for a stationary kernel k, with T_k[r] = k(0, r h_k e_k) / s0 and s0 = k(x, x): the product of
/// the kernel's 1-D slices along the axes. It is K_UU exactly when k is separable,
///   k(x, y) = s0 prod_k f_k(x_k - y_k),  f_k(0) = 1
/// (the squared exponential, isotropic or ARD; products of factors that each act on one feature,
/// times constants; any stationary kernel in 1-D); for the other stationary families in d > 1
/// it is a different kernel, the product of their 1-D slices (Python warns and refuses sums
/// across features: gprat/models/kiss.py). Trees are accepted when every leaf is stationary
/// (SquaredExponential, Matern*, RationalQuadratic, Periodic) or Constant; Linear and White are
/// refused.
///
/// Solves: preconditioned batched CG (mBCG) on B = [y, z_1 .. z_t], one MVM per iteration for all
/// columns, each column with its own CG scalars (a column's result never depends on the others).
/// Preconditioner: P = L_k L_k^T + sigma2 I, L_k the rank-k pivoted Cholesky factor of
/// W K_UU W^T (Harbrecht et al. 2012), applied by Woodbury:
///   P^{-1} v = (v - L M^{-1} L^T v) / sigma2,   M = sigma2 I_k + L^T L,
///   log|P| = (n - k) log sigma2 + log|M|   (exact).
/// Probes z_j ~ N(0, P): z_j = L e + sigma e', e ~ N(0, I_k), e' ~ N(0, I_n), seeded per probe.
/// Log-determinant (stochastic Lanczos quadrature): PCG on K~ with P equals CG on
/// A^ = P^{-1/2} K~ P^{-1/2} with right-hand side P^{-1/2} z, so its coefficients give the
/// Lanczos tridiagonal of A^ started at P^{-1/2} z:
///   T_00 = 1/a_0,  T_ii = 1/a_i + b_{i-1}/a_{i-1},  T_{i,i+1} = sqrt(b_i)/a_i
///   log|K~| ~ log|P| + (1/t) sum_j (z_j^T P^{-1} z_j) e_1^T log(T_j) e_1.
/// Estimate of the log marginal likelihood and its gradient (alpha = K~^{-1} y, u_j = K~^{-1} z_j):
///   LML = -1/2 y^T alpha - 1/2 log|K~| - n/2 log(2 pi)
///   dLML/dtheta = 1/2 alpha^T dK alpha - 1/2 (1/t) sum_j (P^{-1} z_j)^T dK u_j   (Hutchinson:
///   E[(P^{-1} z)(z)^T] = I for z ~ N(0, P)),  dK = W dK_UU W^T for kernel entries, dK = sigma2 I
///   for log sigma2. With K_UU = s0 (x)_k T_k, a kernel parameter p gives
///   dK_UU/dtheta_p = (ds0/dtheta_p / s0) K_UU + s0 sum_k T_0 (x) .. dT_{p,k} .. (x) T_{d-1},
///   dT_{p,k}[r] = (dk(0, r h_k e_k)/dtheta_p - T_k[r] ds0/dtheta_p) / s0,
///   each term still Kronecker-Toeplitz; only the (p, k) with dT_{p,k} != 0 are applied.
/// Prediction: mean = w*^T a with a = K_UU W^T alpha cached at fit (4^d per point); variance
///   k~(x*, x*) - k~*^T K~^{-1} k~*, k~* = W K_UU w*, by one CG solve per test point (batched).
/// theta = [kernel theta (log lengthscale(s), log signal variance), log sigma2].
/// Results do not depend on the thread count: every loop runs in fixed-size chunks and every
/// reduction sums its chunks in order (parallel.hpp).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <numbers>
#include <span>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "gprat/approx/kiss_gp/cg_rows.hpp"
#include "gprat/approx/kiss_gp/grid.hpp"
#include "gprat/approx/kiss_gp/kronecker_toeplitz.hpp"
#include "gprat/approx/kiss_gp/parallel.hpp"
#include "gprat/core/check.hpp"
#include "gprat/core/errors.hpp"
#include "gprat/kernels/any_kernel.hpp"
#include "gprat/linalg/tile_kernels.hpp"

namespace gprat::approx::kiss_gp {

/// Settings of a KissGP engine.
struct KissGPOptions
{
    std::vector<Index> grid_size;     ///< d entries (<= 0: from the lengthscale), or empty: all automatic
    std::vector<double> grid_bounds;  ///< 2 d entries (low_k, high_k) the grid must cover, or empty: data range
    Index n_probes = 10;              ///< t
    double cg_tol = 1e-6;             ///< relative residual ||r|| <= tol ||b|| per column, after at least 10 iterations (or at 1e-10)
    /// Tolerance of the solves predictions use (alpha at fit, exact variances): min(cg_tol, this).
    /// A loose training tolerance (GPyTorch trains at 1.0) would otherwise leave alpha unsolved.
    double predict_cg_tol = 1e-4;
    Index max_cg_iter = 1000;
    Index preconditioner_rank = 15;  ///< k (0: P = sigma2 I)
    /// Per-feature length scale of the automatic grid rule (d entries), or empty: the kernel's
    /// own lengthscale(s) (single families only; a KernelTree needs grid_size or this).
    std::vector<double> lengthscales;
};

/// Seconds spent per part (reset by reset_timings). interpolation: the W and W^T products run on
/// their own (CG's first W^T D, the gradient, LOVE, apply); kronecker: the K_UU products;
/// cg_other: CG without its K_UU products, of which cg_update (pass 1: W H, x, r, |r|^2, L^T r)
/// and cg_direction (pass 2: P^{-1} r, d, |d|^2, r^T z, W^T d) are the fused row passes
/// (W and W^T inside CG are part of those two).
struct KissTimings
{
    double interpolation = 0.0, kronecker = 0.0, cg_other = 0.0, preconditioner = 0.0, slq = 0.0;
    double cg_update = 0.0, cg_direction = 0.0;
    double probes = 0.0;    ///< drawing z_j = L e + sigma e' into B
    double gradient = 0.0;  ///< the gradient after CG: W^T [alpha, u], W^T P^{-1} z, dK_UU products, dots
    /// largest |r^T P^{-1} r by Woodbury - r^T z| / r^T z over the CG iterations (see cg)
    double rz_woodbury_error = 0.0;
    Index mvms = 0, cg_iterations = 0;
};

/// The kernel's Kronecker-Toeplitz structure on a grid: s0, the factors and their derivatives.
struct Structure
{
    double s0 = 1.0;
    Index kernel_params = 0;
    std::vector<ToeplitzFactor> T;  ///< T_k, one per dimension
    std::vector<double> ds0;        ///< per kernel parameter p: (ds0 / dtheta_p) / s0
    /// per kernel parameter p: the dimensions k with dT_{p,k} != 0 and those factors
    std::vector<std::vector<std::pair<Index, ToeplitzFactor>>> dT;
};

/// InvalidArgument unless every leaf of a kernel tree is stationary or Constant (K_UU Toeplitz).
inline void check_grid_kernel(const kernels::KernelTree& tree)
{
    for (const kernels::TreeNode& node : tree.nodes()) {
        if (node.kind != kernels::NodeKind::Leaf) continue;
        const kernels::Family f = node.family;
        GPRAT_EXPECTS(f != kernels::Family::Linear && f != kernels::Family::White,
                      "KissGP needs a stationary kernel (K_UU Toeplitz per dimension): SquaredExponential, Matern12, "
                      "Matern32, Matern52, RationalQuadratic, Periodic, times Constant; got a tree with a "
                          << kernels::family_names[static_cast<int>(f)]
                          << " leaf (White: use noise_variance)");
    }
}

/// The structure of a stationary kernel on the grid, from its per-pair value and gradient on
/// points that differ along one dimension only (the 1-D slices; see the file header).
/// @throws InvalidArgument for a kernel tree with a non-stationary leaf.
inline Structure make_structure(const kernels::AnyKernel& kernel, const std::vector<GridAxis>& axes)
{
    const Index d = static_cast<Index>(axes.size());
    return std::visit(
        [&](const auto& k) -> Structure {
            using K = std::remove_cvref_t<decltype(k)>;
            if constexpr (std::is_same_v<K, kernels::KernelTree>) check_grid_kernel(k);
            Structure s;
            const Index P = k.n_params();
            s.kernel_params = P;
            std::vector<double> x0(static_cast<std::size_t>(d), 0.0), xr(static_cast<std::size_t>(d), 0.0);
            std::vector<double> g0(static_cast<std::size_t>(P)), grad(static_cast<std::size_t>(P));
            // s0 = k(0, 0) and its gradient, by the off-diagonal code (White, the one kernel where
            // they differ, is refused above)
            s.s0 = k.gradient(x0.data(), x0.data(), d, std::span<double>(g0));
            GPRAT_EXPECTS(std::isfinite(s.s0) && s.s0 > 0, "KissGP: k(x, x) must be positive; got " << s.s0);
            s.ds0.resize(static_cast<std::size_t>(P));
            for (Index p = 0; p < P; ++p) s.ds0[static_cast<std::size_t>(p)] = g0[static_cast<std::size_t>(p)] / s.s0;
            s.dT.resize(static_cast<std::size_t>(P));
            for (Index dim = 0; dim < d; ++dim) {
                const Index mk = axes[static_cast<std::size_t>(dim)].m;
                std::vector<double> t(static_cast<std::size_t>(mk));
                std::vector<std::vector<double>> dt(static_cast<std::size_t>(P), std::vector<double>(static_cast<std::size_t>(mk)));
                for (Index r = 0; r < mk; ++r) {
                    std::fill(xr.begin(), xr.end(), 0.0);
                    xr[static_cast<std::size_t>(dim)] = static_cast<double>(r) * axes[static_cast<std::size_t>(dim)].h;
                    // t_k[r] = k(0, r h_k e_k) / s0;  dt_{p,k}[r] = (dk/dtheta_p - t_k[r] ds0/dtheta_p) / s0
                    const double v = k.gradient(x0.data(), xr.data(), d, std::span<double>(grad));
                    const double tr = v / s.s0;
                    t[static_cast<std::size_t>(r)] = tr;
                    for (Index p = 0; p < P; ++p)
                        dt[static_cast<std::size_t>(p)][static_cast<std::size_t>(r)] =
                            (grad[static_cast<std::size_t>(p)] - tr * g0[static_cast<std::size_t>(p)]) / s.s0;
                }
                for (Index p = 0; p < P; ++p) {
                    // a parameter that leaves this slice's shape alone (a variance, another
                    // feature's lengthscale) gives zero up to rounding of the subtraction
                    double big = 0.0;
                    for (double v : dt[static_cast<std::size_t>(p)]) big = std::max(big, std::abs(v));
                    if (big > 1e-13) s.dT[static_cast<std::size_t>(p)].emplace_back(dim, ToeplitzFactor(std::move(dt[static_cast<std::size_t>(p)])));
                }
                s.T.emplace_back(std::move(t));
            }
            return s;
        },
        kernel);
}

/// Counter-based normal numbers: stream `stream` of seed `seed` (SplitMix64 then Box-Muller),
/// the same on every platform and thread count.
class NormalStream
{
  public:
    NormalStream(std::uint64_t seed, std::uint64_t stream)
        : start_(seed ^ (0x9E3779B97F4A7C15ULL * (stream + 1))), state_(start_)
    {
    }
    double next()
    {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        // u1 in (0, 1], u2 in [0, 1): r = sqrt(-2 log u1), (r cos 2 pi u2, r sin 2 pi u2)
        const double u1 = (static_cast<double>(bits() >> 11) + 1.0) * 0x1.0p-53;
        const double u2 = static_cast<double>(bits() >> 11) * 0x1.0p-53;
        const double r = std::sqrt(-2.0 * std::log(u1));
        spare_ = r * std::sin(2.0 * std::numbers::pi * u2);
        has_spare_ = true;
        return r * std::cos(2.0 * std::numbers::pi * u2);
    }

    /// Position the stream so that the next next() is its normal number q (from 0) of the
    /// stream as first constructed: normals 2p and 2p + 1 are the pair made from the 64-bit
    /// draws 2p and 2p + 1, and draw number q adds (q + 1) times the increment to the state.
    void skip_to(std::uint64_t q)
    {
        state_ = start_ + 0x9E3779B97F4A7C15ULL * (2 * (q / 2));
        has_spare_ = false;
        if (q % 2 == 1) (void)next();
    }

  private:
    std::uint64_t bits()
    {
        std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    std::uint64_t start_;
    std::uint64_t state_;
    double spare_ = 0.0;
    bool has_spare_ = false;
};

class KissGP
{
  public:
    /// Rows per chunk of the n-sized loops (fixed: results do not depend on the thread count).
    static constexpr Index row_chunk = 8192;

    /// @param X row-major (n, d), y (n): borrowed, they must outlive the engine.
    /// @throws InvalidArgument for bad shapes or options, a non-stationary kernel, or training
    ///         points outside grid_bounds.
    KissGP(kernels::AnyKernel kernel, double noise_variance, const double* X, const double* y, Index n, Index d,
           KissGPOptions options)
        : kernel_(std::move(kernel)), noise_(noise_variance), X_(X), y_(y), n_(n), d_(d), options_(std::move(options))
    {
        GPRAT_EXPECTS(n >= 1 && d >= 1, "X must have at least one row and one column; got (" << n << ", " << d << ")");
        GPRAT_EXPECTS(std::isfinite(noise_) && noise_ > 0, "noise_variance must be positive and finite; got " << noise_);
        GPRAT_EXPECTS(options_.n_probes >= 1, "n_probes must be >= 1; got " << options_.n_probes);
        GPRAT_EXPECTS(options_.cg_tol > 0 && std::isfinite(options_.cg_tol), "cg_tol must be positive; got " << options_.cg_tol);
        GPRAT_EXPECTS(options_.predict_cg_tol > 0 && std::isfinite(options_.predict_cg_tol),
                      "predict_cg_tol must be positive; got " << options_.predict_cg_tol);
        GPRAT_EXPECTS(options_.max_cg_iter >= 1, "max_cg_iter must be >= 1; got " << options_.max_cg_iter);
        GPRAT_EXPECTS(options_.preconditioner_rank >= 0, "preconditioner_rank must be >= 0; got " << options_.preconditioner_rank);
        GPRAT_EXPECTS(options_.grid_size.empty() || static_cast<Index>(options_.grid_size.size()) == d,
                      "grid_size must have one entry per feature (" << d << "); got " << options_.grid_size.size());
        GPRAT_EXPECTS(options_.grid_bounds.empty() || static_cast<Index>(options_.grid_bounds.size()) == 2 * d,
                      "grid_bounds must have one (low, high) pair per feature (" << d << ")");
        kernels::check_features(kernel_, d);
        (void)make_structure(kernel_, std::vector<GridAxis>(static_cast<std::size_t>(d), GridAxis{0.0, 1.0, 8}));  // refuses a non-stationary kernel early
        const std::vector<double> l = lengthscales();
        for (Index k = 0; k < d; ++k) {
            double a = 0.0, b = 0.0;
            if (options_.grid_bounds.empty()) {
                a = b = X[k];
                for (Index i = 0; i < n; ++i) {
                    a = std::min(a, X[i * d + k]);
                    b = std::max(b, X[i * d + k]);
                }
            } else {
                a = options_.grid_bounds[static_cast<std::size_t>(2 * k)];
                b = options_.grid_bounds[static_cast<std::size_t>(2 * k + 1)];
            }
            const Index mk = options_.grid_size.empty() ? 0 : options_.grid_size[static_cast<std::size_t>(k)];
            axes_.push_back(make_axis(a, b, mk, l[static_cast<std::size_t>(k)]));
        }
        m_ = 1;
        for (const GridAxis& ax : axes_) m_ *= ax.m;
        W_ = interpolate(axes_, X, n, "X");
    }

    Index n() const noexcept { return n_; }
    Index d() const noexcept { return d_; }
    /// m = prod_k m_k, the grid size.
    Index m() const noexcept { return m_; }
    const std::vector<GridAxis>& axes() const noexcept { return axes_; }
    const KissGPOptions& options() const noexcept { return options_; }
    Index n_params() const { return kernels::kernel_params(kernel_) + 1; }
    kernels::AnyKernel kernel() const
    {
        std::lock_guard lock(mutex_);
        return kernel_;
    }
    double noise_variance() const
    {
        std::lock_guard lock(mutex_);
        return noise_;
    }

    std::vector<double> theta() const
    {
        std::lock_guard lock(mutex_);
        std::vector<double> t = kernels::kernel_theta(kernel_);
        t.push_back(std::log(noise_));
        return t;
    }
    /// Set theta; the fit (alpha, cache, preconditioner) is recomputed by the next fit().
    void set_theta(std::span<const double> theta)
    {
        check_theta(theta);
        std::lock_guard lock(mutex_);
        kernel_ = kernels::kernel_with_theta(kernel_, theta.first(theta.size() - 1));
        noise_ = std::exp(theta.back());
        fitted_ = false;
    }

    /// Solve for alpha at the current theta, cache a = K_UU W^T alpha and the preconditioner.
    /// @return the estimate of the log marginal likelihood (seeded by `seed`).
    double fit(std::uint64_t seed)
    {
        std::lock_guard lock(mutex_);
        const std::vector<double> t = theta_locked();
        return evaluate(t, nullptr, seed, true);
    }

    bool fitted() const
    {
        std::lock_guard lock(mutex_);
        return fitted_;
    }

    /// The estimate of the log marginal likelihood at theta and, when gradient is not null, of
    /// its gradient (n_params() entries); the fitted state does not change.
    double training_step(std::span<const double> theta, double* gradient, std::uint64_t seed)
    {
        check_theta(theta);
        std::lock_guard lock(mutex_);
        return evaluate(std::vector<double>(theta.begin(), theta.end()), gradient, seed, false);
    }

    /// out = K~ V for V row-major (n, c), at the current theta.
    void mvm(const double* V, Index c, double* out)
    {
        std::lock_guard lock(mutex_);
        const Structure s = make_structure(kernel_, axes_);
        Workspace w(n_, m_, c);
        apply(s, noise_, V, c, out, w);
    }

    /// out = K~^{-1} B (B row-major (n, c)) by preconditioned CG at the current theta.
    /// @return the CG iterations of the slowest column.
    Index solve(const double* B, Index c, double* out)
    {
        std::lock_guard lock(mutex_);
        const Structure s = make_structure(kernel_, axes_);
        const Preconditioner P = make_preconditioner(s, noise_);
        std::vector<Index> iterations;
        cg(s, noise_, P, B, c, out, nullptr, nullptr, iterations);
        return *std::max_element(iterations.begin(), iterations.end());
    }

    /// Posterior at m test points Xs (row-major (m, d)); variance may be null.
    /// @throws InvalidArgument for a test point outside the interpolable grid (never snapped).
    void predict(const double* Xs, Index m, double* mean, double* variance, bool include_noise)
    {
        GPRAT_EXPECTS(m >= 1, "X must have at least one row; got 0");
        std::lock_guard lock(mutex_);
        GPRAT_EXPECTS(fitted_, "KissGP: fit() before predict");
        const Interpolation Ws = interpolate(axes_, Xs, m, "X");
        const Index P4 = Ws.nnz;
        parallel_chunks("kiss_predict_mean", m, row_chunk, [&](Index b, Index e) {
            for (Index i = b; i < e; ++i) {  // mean_i = w*_i^T a
                double acc = 0.0;
                for (Index s = 0; s < P4; ++s)
                    acc += Ws.value[static_cast<std::size_t>(i * P4 + s)] * a_[static_cast<std::size_t>(Ws.index[static_cast<std::size_t>(i * P4 + s)])];
                mean[i] = acc;
            }
        });
        if (variance == nullptr) return;
        const Index batch = 16;
        std::vector<double> R, Xsol, prior;
        for (Index b0 = 0; b0 < m; b0 += batch) {
            const Index cb = std::min(batch, m - b0);
            R.assign(static_cast<std::size_t>(n_ * cb), 0.0);
            Xsol.assign(static_cast<std::size_t>(n_ * cb), 0.0);
            prior.assign(static_cast<std::size_t>(cb), 0.0);
            cross_covariance(cached_, Ws, b0, cb, R.data(), prior.data());
            std::vector<Index> iterations;
            const std::vector<double> tol(static_cast<std::size_t>(cb), predict_tol());
            cg(cached_, noise_, cached_precond_, R.data(), cb, Xsol.data(), nullptr, nullptr, iterations, nullptr, nullptr, &tol);
            std::vector<double> q(static_cast<std::size_t>(cb));
            column_dots(R.data(), Xsol.data(), cb, q.data());
            for (Index j = 0; j < cb; ++j) {  // var = k~(x*, x*) - k~*^T K~^{-1} k~*
                const double v = prior[static_cast<std::size_t>(j)] - q[static_cast<std::size_t>(j)];
                variance[b0 + j] = std::max(0.0, v) + (include_noise ? noise_ : 0.0);
            }
        }
    }

    /// Latent variances at m test points by the LOVE cache (Pleiss et al. 2018), built on first
    /// use from `rank` Lanczos steps on K~ (full reorthogonalization, seeded start `seed`):
    ///   K~ Q = Q T (+ residual),  K~^{-1} ~ Q T^{-1} Q^T = R R^T,  R = Q L_T^{-T},  L_T L_T^T = T
    ///   C = K_UU W^T R (m, k),  var(x*) ~ w*^T K_UU w* - |C^T w*|^2   (4^d k per point).
    /// The approximation is exact on the Krylov space; outside it the variance is overestimated
    /// (never below the exact one). Lanczos stops early at an invariant subspace.
    /// @return the rank used.
    Index predict_variance_love(const double* Xs, Index m, double* variance, bool include_noise, Index rank,
                                std::uint64_t seed)
    {
        GPRAT_EXPECTS(m >= 1, "X must have at least one row; got 0");
        GPRAT_EXPECTS(rank >= 1, "the LOVE rank must be >= 1; got " << rank);
        std::lock_guard lock(mutex_);
        GPRAT_EXPECTS(fitted_, "KissGP: fit() before predict");
        if (love_rank_ == 0 || love_requested_ != rank) build_love(std::min(rank, n_), seed);
        love_requested_ = rank;
        const Interpolation Ws = interpolate(axes_, Xs, m, "X");
        const Index k = love_rank_, P4 = Ws.nnz;
        const Structure& s = cached_;
        parallel_chunks("kiss_love_var", m, row_chunk, [&](Index b, Index e) {
            std::vector<double> g(static_cast<std::size_t>(k));
            for (Index i = b; i < e; ++i) {
                double prior = s.s0;  // w*^T K_UU w* = s0 prod_k sum_{q,r} w_q w_r t_k[|q - r|]
                for (Index dim = 0; dim < d_; ++dim) {
                    const double* w = &Ws.weight[static_cast<std::size_t>(i * d_ + dim) * 4];
                    double acc = 0.0;
                    for (Index q = 0; q < 4; ++q)
                        for (Index r = 0; r < 4; ++r) acc += w[q] * w[r] * s.T[static_cast<std::size_t>(dim)].at(q - r);
                    prior *= acc;
                }
                std::fill(g.begin(), g.end(), 0.0);
                for (Index x = 0; x < P4; ++x) {  // g = C^T w*
                    const double w = Ws.value[static_cast<std::size_t>(i * P4 + x)];
                    const double* c = love_.data() + static_cast<Index>(Ws.index[static_cast<std::size_t>(i * P4 + x)]) * k;
                    for (Index l = 0; l < k; ++l) g[static_cast<std::size_t>(l)] += w * c[l];
                }
                double gg = 0.0;
                for (double v : g) gg += v * v;
                variance[i] = std::max(0.0, prior - gg) + (include_noise ? noise_ : 0.0);
            }
        });
        return k;
    }

    /// a = K_UU W^T alpha (m entries) and alpha (n): the caches of the last fit.
    const std::vector<double>& mean_cache() const noexcept { return a_; }
    const std::vector<double>& alpha() const noexcept { return alpha_; }
    /// CG iterations of each column in the last solve of fit / training_step ([y, probes...]).
    const std::vector<Index>& last_iterations() const noexcept { return last_iterations_; }
    KissTimings timings() const
    {
        std::lock_guard lock(mutex_);
        return timings_;
    }
    void reset_timings()
    {
        std::lock_guard lock(mutex_);
        timings_ = KissTimings{};
    }

    /// Bytes a training step allocates: W (36 d + 12 4^d per point), the CG blocks (5 n c
    /// doubles, c = t + 1: R, D, Q/Z, X, P^{-1} B), grid blocks (m c doubles per partial sum of W^T and 4 more), the
    /// preconditioner (n k) and the Kronecker factors.
    static double training_step_bytes(Index n, Index d, Index m, Index n_probes, Index rank)
    {
        const double c = static_cast<double>(n_probes + 1);
        const double chunks = static_cast<double>(scatter_groups(n, m, n_probes + 1));
        return (36.0 * static_cast<double>(d) + 12.0 * std::pow(4.0, static_cast<double>(d))) * static_cast<double>(n) +
               8.0 * (5.0 * static_cast<double>(n) * c +
                                                          (4.0 + chunks) * static_cast<double>(m) * c +
                                                          static_cast<double>(n) * static_cast<double>(rank + 2) +
                                                          2.0 * static_cast<double>(m));
    }

  private:
    struct Workspace
    {
        std::vector<double> G, H, work;  ///< (m, c) grid blocks
        Workspace(Index n, Index m, Index c)
            : G(static_cast<std::size_t>(m * c)), H(static_cast<std::size_t>(m * c)), work(static_cast<std::size_t>(m * c))
        {
            (void)n;
        }
    };

    struct Preconditioner
    {
        Index k = 0;
        std::vector<double> L;  ///< (n, k) row-major
        std::vector<double> M;  ///< (k, k) column-major: chol(sigma2 I + L^T L), lower
        double sigma2 = 1.0;
        double logdet = 0.0;    ///< log|P|
    };

    /// Partial sums of W^T V: up to 16 point ranges of at least 4096 points, fewer when their
    /// (m, c) blocks would pass 64 MiB together; from n, m and c only (never the thread count).
    static Index scatter_groups(Index n, Index m, Index c)
    {
        const Index by_memory = std::max<Index>(1, (Index{64} << 20) / std::max<Index>(1, m * c * 8));
        return std::max<Index>(1, std::min({Index{16}, by_memory, (n + 4095) / 4096}));
    }

    double predict_tol() const noexcept { return std::min(options_.cg_tol, options_.predict_cg_tol); }

    std::vector<double> lengthscales() const
    {
        if (!options_.lengthscales.empty()) {
            GPRAT_EXPECTS(static_cast<Index>(options_.lengthscales.size()) == d_,
                          "KissGPOptions.lengthscales must have one entry per feature (" << d_ << "); got "
                                                                                         << options_.lengthscales.size());
            return options_.lengthscales;
        }
        if (std::holds_alternative<kernels::KernelTree>(kernel_)) {
            // the grid rule needs a length scale per feature; a tree does not name one
            for (Index k = 0; k < d_; ++k)
                GPRAT_EXPECTS(!options_.grid_size.empty() && options_.grid_size[static_cast<std::size_t>(k)] > 0,
                              "KissGP with a composite kernel: give grid_size or KissGPOptions.lengthscales");
            return std::vector<double>(static_cast<std::size_t>(d_), 1.0);
        }
        std::vector<double> t = kernels::kernel_theta(kernel_);
        const Index p = static_cast<Index>(t.size()) - 1;  // stationary: lengthscale(s), then s2
        std::vector<double> l(static_cast<std::size_t>(d_));
        for (Index k = 0; k < d_; ++k) l[static_cast<std::size_t>(k)] = std::exp(t[static_cast<std::size_t>(p == d_ ? k : 0)]);
        return l;
    }

    std::vector<double> theta_locked() const
    {
        std::vector<double> t = kernels::kernel_theta(kernel_);
        t.push_back(std::log(noise_));
        return t;
    }

    void check_theta(std::span<const double> theta) const
    {
        GPRAT_EXPECTS(static_cast<Index>(theta.size()) == n_params(),
                      "theta must have " << n_params() << " entries; got " << theta.size());
        for (double v : theta) GPRAT_EXPECTS(std::isfinite(v), "theta must be finite; got " << v);
    }

    template <typename Clock = std::chrono::steady_clock>
    static double seconds_since(typename Clock::time_point t0)
    {
        return std::chrono::duration<double>(Clock::now() - t0).count();
    }

    /// G <- W^T V for V (n, c): the points are cut into `scatter_groups` fixed ranges, each summed
    /// into its own (m, c) partial block by one task, and the blocks are added in order.
    void scatter(const double* V, Index c, double* G)
    {
        const auto t0 = std::chrono::steady_clock::now();
        const Index groups = scatter_groups(n_, m_, c);
        const Index per = (n_ + groups - 1) / groups;
        const Index P4 = W_.nnz;
        std::vector<double> partial(groups > 1 ? static_cast<std::size_t>(m_ * c * groups) : 0);
        parallel_chunks("kiss_scatter", groups, 1, [&](Index b, Index e) {
            for (Index q = b; q < e; ++q) {
                double* acc = groups > 1 ? partial.data() + q * m_ * c : G;
                std::fill(acc, acc + m_ * c, 0.0);
                const Index i1 = std::min(n_, (q + 1) * per);
                for (Index i = q * per; i < i1; ++i) {
                    const double* v = V + i * c;
                    const std::int32_t* idx = W_.index.data() + i * P4;
                    const double* wv = W_.value.data() + i * P4;
                    for (Index s = 0; s < P4; ++s) {  // G(u, :) += w_is V(i, :)
                        double* g = acc + static_cast<Index>(idx[s]) * c;
                        const double w = wv[s];
#pragma omp simd
                        for (Index j = 0; j < c; ++j) g[j] += w * v[j];
                    }
                }
            }
        });
        if (groups > 1)
            parallel_chunks("kiss_scatter_sum", m_ * c, Index{1} << 15, [&](Index b, Index e) {
                for (Index x = b; x < e; ++x) {
                    double s = 0.0;
                    for (Index q = 0; q < groups; ++q) s += partial[static_cast<std::size_t>(q * m_ * c + x)];
                    G[x] = s;
                }
            });
        timings_.interpolation += seconds_since(t0);
    }

    /// out <- W H + diag_scale V for H (m, c), V and out (n, c); V may be null (no diagonal).
    void gather(const double* H, Index c, const double* V, double diag_scale, double* out)
    {
        const auto t0 = std::chrono::steady_clock::now();
        const Index P4 = W_.nnz;
        parallel_chunks("kiss_gather", n_, row_chunk, [&](Index b, Index e) {
            for (Index i = b; i < e; ++i) {
                double* o = out + i * c;
                if (V != nullptr)
                    for (Index j = 0; j < c; ++j) o[j] = diag_scale * V[i * c + j];
                else
                    for (Index j = 0; j < c; ++j) o[j] = 0.0;
                const std::int32_t* idx = W_.index.data() + i * P4;
                const double* wv = W_.value.data() + i * P4;
                for (Index s = 0; s < P4; ++s) {  // out(i, :) += w_is H(u, :)
                    const double* h = H + static_cast<Index>(idx[s]) * c;
                    const double w = wv[s];
#pragma omp simd
                    for (Index j = 0; j < c; ++j) o[j] += w * h[j];
                }
            }
        });
        timings_.interpolation += seconds_since(t0);
    }

    void kron(const Structure& s, const std::vector<const ToeplitzFactor*>& f, double scale, const double* in,
              double* out, double* work, Index c)
    {
        (void)s;
        const auto t0 = std::chrono::steady_clock::now();
        apply_kronecker(f, scale, in, out, work, c);
        timings_.kronecker += seconds_since(t0);
    }

    static std::vector<const ToeplitzFactor*> value_factors(const Structure& s)
    {
        std::vector<const ToeplitzFactor*> f;
        for (const ToeplitzFactor& t : s.T) f.push_back(&t);
        return f;
    }

    /// out <- K~ V = W (K_UU (W^T V)) + sigma2 V.
    void apply(const Structure& s, double sigma2, const double* V, Index c, double* out, Workspace& w)
    {
        scatter(V, c, w.G.data());
        kron(s, value_factors(s), s.s0, w.G.data(), w.H.data(), w.work.data(), c);
        gather(w.H.data(), c, V, sigma2, out);
        ++timings_.mvms;
    }

    /// out[j] = sum_i A(i, j) B(i, j) for (n, c) blocks: per-chunk partial sums added in order.
    void column_dots(const double* A, const double* B, Index c, double* out) const
    {
        const Index chunks = chunk_count(n_, row_chunk);
        std::vector<double> partial(static_cast<std::size_t>(chunks * c), 0.0);
        parallel_chunks("kiss_dot", chunks, 1, [&](Index b, Index e) {
            for (Index q = b; q < e; ++q) {
                double* p = partial.data() + q * c;
                for (Index i = q * row_chunk; i < std::min(n_, (q + 1) * row_chunk); ++i)
                    for (Index j = 0; j < c; ++j) p[j] += A[i * c + j] * B[i * c + j];
            }
        });
        for (Index j = 0; j < c; ++j) {
            double s = 0.0;
            for (Index q = 0; q < chunks; ++q) s += partial[static_cast<std::size_t>(q * c + j)];
            out[j] = s;
        }
    }

    /// For test points [b0, b0 + cb) of Ws: R(:, j) = W K_UU w*_j (n, cb row-major) and
    /// prior[j] = w*_j^T K_UU w*_j, through the 1-D products v_k = T_k w*_jk:
    ///   (K_UU w*)(u) = s0 prod_k v_k(u_k),  R(i, j) = s0 prod_k sum_s w_iks v_k(first_ik + s).
    void cross_covariance(const Structure& s, const Interpolation& Ws, Index b0, Index cb, double* R, double* prior) const
    {
        // v[(j * d + k)] : the m_k-vector T_k w*_jk
        std::vector<std::vector<double>> v(static_cast<std::size_t>(cb * d_));
        for (Index j = 0; j < cb; ++j) {
            double p = s.s0;
            for (Index k = 0; k < d_; ++k) {
                const ToeplitzFactor& T = s.T[static_cast<std::size_t>(k)];
                const Index mk = T.m();
                const std::size_t at = static_cast<std::size_t>((b0 + j) * d_ + k);
                const Index f = Ws.first[at];
                const double* w = &Ws.weight[at * 4];
                std::vector<double>& vk = v[static_cast<std::size_t>(j * d_ + k)];
                vk.assign(static_cast<std::size_t>(mk), 0.0);
                for (Index u = 0; u < mk; ++u)
                    for (Index q = 0; q < 4; ++q) vk[static_cast<std::size_t>(u)] += w[q] * T.at(u - (f + q));
                double pk = 0.0;
                for (Index q = 0; q < 4; ++q) pk += w[q] * vk[static_cast<std::size_t>(f + q)];
                p *= pk;
            }
            prior[j] = p;
        }
        parallel_chunks("kiss_cross", n_, row_chunk, [&](Index b, Index e) {
            for (Index i = b; i < e; ++i)
                for (Index j = 0; j < cb; ++j) {
                    double p = s.s0;
                    for (Index k = 0; k < d_; ++k) {
                        const std::size_t at = static_cast<std::size_t>(i * d_ + k);
                        const Index f = W_.first[at];
                        const double* w = &W_.weight[at * 4];
                        const std::vector<double>& vk = v[static_cast<std::size_t>(j * d_ + k)];
                        double acc = 0.0;
                        for (Index q = 0; q < 4; ++q) acc += w[q] * vk[static_cast<std::size_t>(f + q)];
                        p *= acc;
                    }
                    R[i * cb + j] = p;
                }
        });
    }

    /// Rank-k pivoted Cholesky of W K_UU W^T (greedy largest remaining diagonal), then M and log|P|.
    Preconditioner make_preconditioner(const Structure& s, double sigma2)
    {
        const auto t0 = std::chrono::steady_clock::now();
        Preconditioner P;
        P.sigma2 = sigma2;
        P.k = std::min(options_.preconditioner_rank, n_);
        const Index k = P.k;
        P.L.assign(static_cast<std::size_t>(n_ * k), 0.0);
        if (k > 0) {
            // diag(W K_UU W^T)_i = s0 prod_k sum_{q,q'} w_iq w_iq' t_k[|q - q'|]
            std::vector<double> diag(static_cast<std::size_t>(n_));
            parallel_chunks("kiss_pivchol_diag", n_, row_chunk, [&](Index b, Index e) {
                for (Index i = b; i < e; ++i) {
                    double p = s.s0;
                    for (Index dim = 0; dim < d_; ++dim) {
                        const double* w = &W_.weight[static_cast<std::size_t>(i * d_ + dim) * 4];
                        const ToeplitzFactor& T = s.T[static_cast<std::size_t>(dim)];
                        double acc = 0.0;
                        for (Index q = 0; q < 4; ++q)
                            for (Index r = 0; r < 4; ++r) acc += w[q] * w[r] * T.at(q - r);
                        p *= acc;
                    }
                    diag[static_cast<std::size_t>(i)] = p;
                }
            });
            const double diag0 = *std::max_element(diag.begin(), diag.end());
            // built column by column in Lc (n, k) column-major: column j reads the j earlier
            // columns as contiguous streams (row-major, each column would stream all of L);
            // copied into P.L (row-major, the layout CG reads) at the end
            std::vector<double> col(static_cast<std::size_t>(n_)), prior(1), Lc(static_cast<std::size_t>(n_ * k), 0.0), lp(static_cast<std::size_t>(k));
            for (Index j = 0; j < k; ++j) {
                const Index piv = static_cast<Index>(std::max_element(diag.begin(), diag.end()) - diag.begin());
                const double dp = diag[static_cast<std::size_t>(piv)];
                if (!(dp > 1e-12 * diag0)) break;  // numerically rank j: the remaining columns stay 0
                const double lpp = std::sqrt(dp);
                for (Index l = 0; l < j; ++l) lp[static_cast<std::size_t>(l)] = Lc[static_cast<std::size_t>(l * n_ + piv)];
                cross_covariance(s, W_, piv, 1, col.data(), prior.data());  // K(:, piv)
                parallel_chunks("kiss_pivchol", n_, row_chunk, [&](Index b, Index e) {
                    // L(i, j) = (K(i, piv) - sum_l L(i, l) L(piv, l)) / L(piv, j), l ascending
                    double* lj = Lc.data() + j * n_;
                    for (Index i = b; i < e; ++i) lj[i] = col[static_cast<std::size_t>(i)];
                    for (Index l = 0; l < j; ++l) {
                        const double* ll = Lc.data() + l * n_;
                        const double a = lp[static_cast<std::size_t>(l)];
#pragma omp simd
                        for (Index i = b; i < e; ++i) lj[i] -= ll[i] * a;
                    }
                    for (Index i = b; i < e; ++i) {
                        lj[i] /= lpp;
                        diag[static_cast<std::size_t>(i)] -= lj[i] * lj[i];
                    }
                });
                diag[static_cast<std::size_t>(piv)] = 0.0;
            }
            parallel_chunks("kiss_pivchol_layout", n_, row_chunk, [&](Index b, Index e) {
                for (Index i = b; i < e; ++i)
                    for (Index l = 0; l < k; ++l) P.L[static_cast<std::size_t>(i * k + l)] = Lc[static_cast<std::size_t>(l * n_ + i)];
            });
        }
        // M = sigma2 I + L^T L; chol(M); log|P| = (n - k) log sigma2 + 2 sum log M_ll
        P.M.assign(static_cast<std::size_t>(k * k), 0.0);
        if (k > 0) {
            const Index chunks = chunk_count(n_, row_chunk);
            std::vector<double> partial(static_cast<std::size_t>(chunks * k * k), 0.0);
            parallel_chunks("kiss_precond_gram", chunks, 1, [&](Index b, Index e) {
                for (Index q = b; q < e; ++q) {  // L^T L per chunk: L_cm L_cm^T
                    const Index i0 = q * row_chunk, nq = std::min(n_, i0 + row_chunk) - i0;
                    const tiles::TileView<double> Lq(P.L.data() + i0 * k, k, nq, k);
                    linalg::tile::gemm(Op::NoTrans, Op::Trans, 1.0, Lq, Lq, 0.0,
                                       tiles::TileView<double>(partial.data() + q * k * k, k, k, k));
                }
            });
            for (Index x = 0; x < k * k; ++x)
                for (Index q = 0; q < chunks; ++q) P.M[static_cast<std::size_t>(x)] += partial[static_cast<std::size_t>(q * k * k + x)];
            for (Index l = 0; l < k; ++l) P.M[static_cast<std::size_t>(l + l * k)] += sigma2;
            linalg::tile::potrf(tiles::TileView<double>(P.M.data(), k, k, k), 0);
        }
        P.logdet = static_cast<double>(n_ - k) * std::log(sigma2);
        for (Index l = 0; l < k; ++l) P.logdet += 2.0 * std::log(P.M[static_cast<std::size_t>(l + l * k)]);
        timings_.preconditioner += seconds_since(t0);
        return P;
    }

    /// Relative residual at which a CG column counts as solved to rounding and may stop before
    /// the minimum of 10 iterations (see cg).
    static constexpr double converged_tol = 1e-10;

    /// Rows per task of the fused CG update pass (fixed: results do not depend on the thread count).
    static constexpr Index update_chunk = 2048;

    /// Preconditioned CG on K~ X = B for each column of B (n, c) at once (mBCG), in two fused
    /// passes over the rows per iteration (the vector work is memory-bound: each pass reads and
    /// writes every block it touches once). Per column, with H = K_UU G and G = W^T D:
    ///   d^T K~ d = G^T H + sigma2 |d|^2          (grid-sized: no pass over Q = K~ d at all)
    ///   pass 1, per row: q = W H + sigma2 d (on the fly, never stored), x += a d, r -= a q,
    ///           and the sums |r|^2 and S = L^T r
    ///   Y = M^{-1} S,  r^T P^{-1} r = (|r|^2 - S^T Y) / sigma2   (Woodbury, no pass)
    ///   pass 2, per row: z = (r - L Y) / sigma2 (on the fly), d = z + b d, and the sums |d|^2,
    ///           r^T z (exact, used by the next alpha) and the partial W^T d of the next MVM
    /// b uses the Woodbury value of r^T P^{-1} r (it is needed before the pass that forms z);
    /// a uses the exact r^T z of pass 2 (CG stays consistent for any b: d^T r = r^T z holds
    /// for d = z + b d_prev, d_prev orthogonal to r). Their largest relative difference is kept
    /// in timings().rz_woodbury_error (measured, tested).
    /// @param[out] Z0   P^{-1} B (n, c), or null
    /// @param[out] tri  per column the CG coefficients (alpha_0, beta_0, alpha_1, ...), or null
    /// @param[out] iterations per column
    /// @param[out] rz0  per column b^T P^{-1} b, or null
    /// Blocks held: R (B moved in), D, X, and P^{-1} B (copied into Z0 when asked).
    void cg(const Structure& s, double sigma2, const Preconditioner& P, const double* B, Index c, double* X,
            double* Z0, std::vector<std::vector<double>>* tri, std::vector<Index>& iterations,
            std::vector<double>* moved_B = nullptr, double* rz0 = nullptr, const std::vector<double>* tol = nullptr)
    {
        const auto t0 = std::chrono::steady_clock::now();
        const double kron_before = timings_.kronecker;
        const std::size_t nc = static_cast<std::size_t>(n_ * c);
        const std::size_t cc = static_cast<std::size_t>(c);
        const Index k = P.k, P4 = W_.nnz;
        const double inv = 1.0 / sigma2;
        std::vector<double> R = moved_B != nullptr ? std::move(*moved_B) : std::vector<double>(B, B + nc);
        std::vector<double> D(nc, 0.0);
        Workspace w(n_, m_, c);
        std::fill(X, X + nc, 0.0);
        std::vector<double> rz(cc), bnorm(cc), pq(cc), rr(cc), dd(cc), alpha(cc), beta(cc, 0.0),
            S(static_cast<std::size_t>(k) * cc), Y(S.size()), rz_exact(cc);
        std::vector<char> active(cc, 1);
        // pass 1's partial sums: per chunk |r|^2 (c) then S (k c); pass 2's: per scatter group
        // r^T z (c), |d|^2 (c) and its (m, c) block of W^T d
        const Index chunks1 = chunk_count(n_, update_chunk);
        const Index groups = scatter_groups(n_, m_, c), per = (n_ + groups - 1) / groups;
        const std::size_t stride1 = cc * static_cast<std::size_t>(k + 1), grid = static_cast<std::size_t>(m_) * cc;
        std::vector<double> part1(static_cast<std::size_t>(chunks1) * stride1), part2(static_cast<std::size_t>(groups) * 2 * cc),
            part_grid(groups > 1 ? static_cast<std::size_t>(groups) * grid : 0);
        const auto reduce1 = [&] {  // rr, S: the chunks' partial sums in chunk order
            std::fill(rr.begin(), rr.end(), 0.0);
            std::fill(S.begin(), S.end(), 0.0);
            for (Index ch = 0; ch < chunks1; ++ch) {
                const double* p = part1.data() + static_cast<std::size_t>(ch) * stride1;
                for (std::size_t j = 0; j < cc; ++j) rr[j] += p[j];
                for (std::size_t x = 0; x < S.size(); ++x) S[x] += p[cc + x];
            }
        };
        const auto solve_M = [&] {  // Y = M^{-1} S per column (C = chol(M): C^{-T} C^{-1})
            Y = S;
            for (Index j = 0; j < c; ++j) {
                for (Index r = 0; r < k; ++r) {
                    double v = Y[static_cast<std::size_t>(r * c + j)];
                    for (Index l = 0; l < r; ++l) v -= P.M[static_cast<std::size_t>(r + l * k)] * Y[static_cast<std::size_t>(l * c + j)];
                    Y[static_cast<std::size_t>(r * c + j)] = v / P.M[static_cast<std::size_t>(r + r * k)];
                }
                for (Index r = k - 1; r >= 0; --r) {
                    double v = Y[static_cast<std::size_t>(r * c + j)];
                    for (Index l = r + 1; l < k; ++l) v -= P.M[static_cast<std::size_t>(l + r * k)] * Y[static_cast<std::size_t>(l * c + j)];
                    Y[static_cast<std::size_t>(r * c + j)] = v / P.M[static_cast<std::size_t>(r + r * k)];
                }
            }
        };
        // pass 2 (cg_rows.hpp): d = z + beta d, |d|^2, r^T z and G = W^T d per scatter group
        const std::size_t cp = (cc + 3) / 4 * 4;
        std::vector<double> Yp(static_cast<std::size_t>(k) * cp, 0.0);  // Y, rows padded to cp columns
        const auto direction = [&] {
            for (Index l = 0; l < k; ++l)
                for (std::size_t j = 0; j < cc; ++j) Yp[static_cast<std::size_t>(l) * cp + j] = Y[static_cast<std::size_t>(l) * cc + j];
            parallel_chunks("kiss_cg_direction", groups, 1, [&](Index b, Index e) {
                std::vector<double> z(cp);
                for (Index q = b; q < e; ++q) {
                    double* rzp = part2.data() + static_cast<std::size_t>(q) * 2 * cc;  // then |d|^2 (c)
                    double* acc = groups > 1 ? part_grid.data() + static_cast<std::size_t>(q) * grid : w.G.data();
                    std::fill(rzp, rzp + 2 * cc, 0.0);
                    std::fill(acc, acc + grid, 0.0);
                    cg_direction_rows<double>(q * per, std::min(n_, (q + 1) * per), c, k, P4, inv, beta.data(),
                                              active.data(), Yp.data(), P.L.data(), W_.index.data(), W_.value.data(),
                                              R.data(), D.data(), rzp, rzp + cc, acc, z.data());
                }
            });
            std::fill(rz_exact.begin(), rz_exact.end(), 0.0);
            std::fill(dd.begin(), dd.end(), 0.0);
            for (Index q = 0; q < groups; ++q)  // group order
                for (std::size_t j = 0; j < cc; ++j) {
                    rz_exact[j] += part2[static_cast<std::size_t>(q) * 2 * cc + j];
                    dd[j] += part2[static_cast<std::size_t>(q) * 2 * cc + cc + j];
                }
            if (groups > 1)
                parallel_chunks("kiss_scatter_sum", static_cast<Index>(grid), Index{1} << 15, [&](Index b, Index e) {
                    for (Index x = b; x < e; ++x) {
                        double v = 0.0;
                        for (Index q = 0; q < groups; ++q) v += part_grid[static_cast<std::size_t>(q) * grid + static_cast<std::size_t>(x)];
                        w.G[static_cast<std::size_t>(x)] = v;
                    }
                });
        };
        // start: |b|^2 and S = L^T b in one pass, then pass 2 with beta = 0 on D = 0 gives
        // D = P^{-1} B exactly (z + 0 * 0 = z), b^T P^{-1} b, |d|^2 and G = W^T D
        parallel_chunks("kiss_cg_start", chunks1, 1, [&](Index b, Index e) {
            for (Index ch = b; ch < e; ++ch) {
                double* rrp = part1.data() + static_cast<std::size_t>(ch) * stride1;
                double* Sp = rrp + cc;
                std::fill(rrp, rrp + stride1, 0.0);
                for (Index i = ch * update_chunk; i < std::min(n_, (ch + 1) * update_chunk); ++i) {
                    const double* ri = R.data() + i * c;
                    const double* li = P.L.data() + i * k;
                    for (Index j = 0; j < c; ++j) rrp[j] += ri[j] * ri[j];
                    for (Index l = 0; l < k; ++l)
                        for (Index j = 0; j < c; ++j) Sp[l * c + j] += li[l] * ri[j];
                }
            }
        });
        reduce1();
        solve_M();
        direction();
        rz = rz_exact;
        if (Z0 != nullptr) std::copy(D.begin(), D.end(), Z0);
        if (rz0 != nullptr) std::copy(rz.begin(), rz.end(), rz0);
        iterations.assign(cc, 0);
        if (tri != nullptr) tri->assign(cc, {});
        for (Index j = 0; j < c; ++j) {
            bnorm[static_cast<std::size_t>(j)] = std::sqrt(rr[static_cast<std::size_t>(j)]);
            if (bnorm[static_cast<std::size_t>(j)] == 0.0) active[static_cast<std::size_t>(j)] = 0;
        }
        const Index min_iter = std::min<Index>(10, n_);
        for (Index it = 0; it < options_.max_cg_iter; ++it) {
            if (std::none_of(active.begin(), active.end(), [](char a) { return a != 0; })) break;
            kron(s, value_factors(s), s.s0, w.G.data(), w.H.data(), w.work.data(), c);  // H = K_UU W^T D
            ++timings_.mvms;
            std::fill(pq.begin(), pq.end(), 0.0);
            for (Index u = 0; u < m_; ++u)  // d^T K~ d = G^T H + sigma2 |d|^2
                for (Index j = 0; j < c; ++j) pq[static_cast<std::size_t>(j)] += w.G[static_cast<std::size_t>(u * c + j)] * w.H[static_cast<std::size_t>(u * c + j)];
            for (Index j = 0; j < c; ++j) {
                const std::size_t jj = static_cast<std::size_t>(j);
                pq[jj] += sigma2 * dd[jj];
                alpha[jj] = 0.0;
                if (!active[jj]) continue;
                if (!(pq[jj] > 0.0) || !std::isfinite(pq[jj]))
                    throw NotPositiveDefinite(it + 1);  // d^T K~ d <= 0: K~ is not positive definite
                alpha[jj] = rz[jj] / pq[jj];
                iterations[jj] = it + 1;
                if (tri != nullptr) (*tri)[jj].push_back(alpha[jj]);
            }
            const auto t1 = std::chrono::steady_clock::now();
            const double* H = w.H.data();
            // pass 1 (cg_rows.hpp): x, r, |r|^2 and S = L^T r per chunk
            parallel_chunks("kiss_cg_update", chunks1, 1, [&](Index b, Index e) {
                std::vector<double> q(cc);
                for (Index ch = b; ch < e; ++ch) {
                    double* rrp = part1.data() + static_cast<std::size_t>(ch) * stride1;  // then S (k, c)
                    std::fill(rrp, rrp + stride1, 0.0);
                    cg_update_rows<double>(ch * update_chunk, std::min(n_, (ch + 1) * update_chunk), c, k, P4, sigma2,
                                           alpha.data(), H, W_.index.data(), W_.value.data(), P.L.data(), D.data(), X,
                                           R.data(), rrp, rrp + cc, q.data());
                }
            });
            reduce1();
            timings_.cg_update += seconds_since(t1);
            for (Index j = 0; j < c; ++j) {
                const std::size_t jj = static_cast<std::size_t>(j);
                const double tj = tol != nullptr ? (*tol)[jj] : options_.cg_tol;
                // the minimum of 10 iterations keeps the SLQ tridiagonal long enough at a loose
                // tolerance; a column solved to rounding (|r| <= converged_tol |b|) stops before it:
                // its Krylov space is invariant, so later iterations change neither x nor the
                // quadrature (measured: the anchor case's estimate is bitwise the same after 4
                // iterations as after 10)
                const double res = std::sqrt(rr[jj]);
                if (active[jj] && res <= tj * bnorm[jj] && (it + 1 >= min_iter || res <= converged_tol * bnorm[jj]))
                    active[jj] = 0;
            }
            if (std::none_of(active.begin(), active.end(), [](char a) { return a != 0; })) break;
            solve_M();
            for (Index j = 0; j < c; ++j) {  // r^T P^{-1} r by Woodbury: (|r|^2 - S^T M^{-1} S) / sigma2
                const std::size_t jj = static_cast<std::size_t>(j);
                double sy = 0.0;
                for (Index l = 0; l < k; ++l) sy += S[static_cast<std::size_t>(l * c + j)] * Y[static_cast<std::size_t>(l * c + j)];
                const double rz_new = (rr[jj] - sy) * inv;
                beta[jj] = active[jj] ? rz_new / rz[jj] : 0.0;
                if (active[jj] && tri != nullptr) (*tri)[jj].push_back(beta[jj]);
            }
            const auto t2 = std::chrono::steady_clock::now();
            direction();
            for (Index j = 0; j < c; ++j) {
                const std::size_t jj = static_cast<std::size_t>(j);
                if (!active[jj]) continue;
                const double woodbury = beta[jj] * rz[jj];
                if (rz_exact[jj] != 0.0)
                    timings_.rz_woodbury_error = std::max(timings_.rz_woodbury_error, std::abs(woodbury - rz_exact[jj]) / std::abs(rz_exact[jj]));
                rz[jj] = rz_exact[jj];
            }
            timings_.cg_direction += seconds_since(t2);
        }
        const Index worst = *std::max_element(iterations.begin(), iterations.end());
        timings_.cg_iterations += worst;
        timings_.cg_other += seconds_since(t0) - (timings_.kronecker - kron_before);
    }

    /// sum_i A[l n + i] v[i] for l < j (columns of the column-major (n, j) A), by fixed row
    /// chunks summed in order.
    void project(const double* A, Index j, const double* v, double* out) const
    {
        const Index chunks = chunk_count(n_, row_chunk);
        std::vector<double> partial(static_cast<std::size_t>(chunks * j), 0.0);
        parallel_chunks("kiss_lanczos_dot", chunks * j, 1, [&](Index b, Index e) {
            for (Index x = b; x < e; ++x) {
                const Index q = x / j, l = x % j;
                double acc = 0.0;
                for (Index i = q * row_chunk; i < std::min(n_, (q + 1) * row_chunk); ++i) acc += A[l * n_ + i] * v[i];
                partial[static_cast<std::size_t>(x)] = acc;
            }
        });
        for (Index l = 0; l < j; ++l) {
            double acc = 0.0;
            for (Index q = 0; q < chunks; ++q) acc += partial[static_cast<std::size_t>(q * j + l)];
            out[l] = acc;
        }
    }

    /// The LOVE cache C (see predict_variance_love) from k Lanczos steps at the fitted theta.
    void build_love(Index k, std::uint64_t seed)
    {
        const Structure& s = cached_;
        std::vector<double> Q(static_cast<std::size_t>(n_ * k), 0.0), v(static_cast<std::size_t>(n_)), h(static_cast<std::size_t>(k));
        std::vector<double> alpha, beta;
        Workspace w(n_, m_, 1);
        NormalStream rng(seed, 0x4C4F5645ULL);  // "LOVE"
        for (Index i = 0; i < n_; ++i) v[static_cast<std::size_t>(i)] = rng.next();
        const auto normalize_into = [&](Index j) {
            double nn = 0.0;
            for (double x : v) nn += x * x;
            const double norm = std::sqrt(nn);
            for (Index i = 0; i < n_; ++i) Q[static_cast<std::size_t>(j * n_ + i)] = v[static_cast<std::size_t>(i)] / norm;
            return norm;
        };
        normalize_into(0);
        Index rank = k;
        for (Index j = 0; j < k; ++j) {
            const double* qj = Q.data() + j * n_;
            apply(s, noise_, qj, 1, v.data(), w);  // v = K~ q_j
            double a = 0.0;
            for (Index i = 0; i < n_; ++i) a += qj[i] * v[static_cast<std::size_t>(i)];
            alpha.push_back(a);
            // v -= Q_{0..j} (Q^T v), twice (full reorthogonalization, "twice is enough")
            for (int pass = 0; pass < 2; ++pass) {
                project(Q.data(), j + 1, v.data(), h.data());
                parallel_chunks("kiss_lanczos_orth", n_, row_chunk, [&](Index b, Index e) {
                    for (Index i = b; i < e; ++i) {
                        double x = v[static_cast<std::size_t>(i)];
                        for (Index l = 0; l <= j; ++l) x -= Q[static_cast<std::size_t>(l * n_ + i)] * h[static_cast<std::size_t>(l)];
                        v[static_cast<std::size_t>(i)] = x;
                    }
                });
            }
            if (j + 1 == k) break;
            double nn = 0.0;
            for (double x : v) nn += x * x;
            const double b = std::sqrt(nn);
            if (!(b > 1e-10 * std::abs(alpha.front()))) {  // invariant subspace: T is exact
                rank = j + 1;
                break;
            }
            beta.push_back(b);
            normalize_into(j + 1);
        }
        // T = L_T L_T^T (tridiagonal Cholesky), R = Q L_T^{-T}: column j of R^T solves L_T r = e
        const Index r = rank;
        std::vector<double> Ld(static_cast<std::size_t>(r)), Le(static_cast<std::size_t>(std::max<Index>(r - 1, 1)));
        for (Index j = 0; j < r; ++j) {
            double dj = alpha[static_cast<std::size_t>(j)] - (j > 0 ? Le[static_cast<std::size_t>(j - 1)] * Le[static_cast<std::size_t>(j - 1)] : 0.0);
            if (!(dj > 0.0)) throw NotPositiveDefinite(j + 1);
            Ld[static_cast<std::size_t>(j)] = std::sqrt(dj);
            if (j + 1 < r) Le[static_cast<std::size_t>(j)] = beta[static_cast<std::size_t>(j)] / Ld[static_cast<std::size_t>(j)];
        }
        // G = W^T Q (m, r) row-major, then C = K_UU G, then C <- C L_T^{-T} row by row:
        // (C L_T^{-T})(u, :) solves L_T x = C(u, :)^T (lower bidiagonal forward substitution)
        std::vector<double> Qr(static_cast<std::size_t>(n_ * r));
        for (Index i = 0; i < n_; ++i)
            for (Index j = 0; j < r; ++j) Qr[static_cast<std::size_t>(i * r + j)] = Q[static_cast<std::size_t>(j * n_ + i)];
        Q.clear();
        Q.shrink_to_fit();
        std::vector<double> G(static_cast<std::size_t>(m_ * r)), C(static_cast<std::size_t>(m_ * r)), work(static_cast<std::size_t>(m_ * r));
        scatter(Qr.data(), r, G.data());
        kron(s, value_factors(s), s.s0, G.data(), C.data(), work.data(), r);
        for (Index u = 0; u < m_; ++u) {
            double* c = C.data() + u * r;
            for (Index j = 0; j < r; ++j) {
                const double prev = j > 0 ? Le[static_cast<std::size_t>(j - 1)] * c[j - 1] : 0.0;
                c[j] = (c[j] - prev) / Ld[static_cast<std::size_t>(j)];
            }
        }
        love_ = std::move(C);
        love_rank_ = r;
    }

    /// e_1^T log(T) e_1 for the Lanczos tridiagonal of CG coefficients (a_0, b_0, a_1, ..., a_J).
    static double lanczos_log_quadrature(const std::vector<double>& coef)
    {
        const Index J = static_cast<Index>((coef.size() + 1) / 2);
        if (J == 0) return 0.0;
        std::vector<double> diag(static_cast<std::size_t>(J)), off(static_cast<std::size_t>(std::max<Index>(J - 1, 1))),
            Z(static_cast<std::size_t>(J * J));
        for (Index i = 0; i < J; ++i) {
            const double a = coef[static_cast<std::size_t>(2 * i)];
            diag[static_cast<std::size_t>(i)] = 1.0 / a;  // T_ii = 1/a_i + b_{i-1}/a_{i-1}
            if (i > 0) {
                const double b = coef[static_cast<std::size_t>(2 * i - 1)];
                const double a_prev = coef[static_cast<std::size_t>(2 * i - 2)];
                diag[static_cast<std::size_t>(i)] += b / a_prev;
                off[static_cast<std::size_t>(i - 1)] = std::sqrt(b) / a_prev;  // T_{i-1,i} = sqrt(b_{i-1}) / a_{i-1}
            }
        }
        linalg::tile::stev(J, diag.data(), off.data(), Z.data());
        double q = 0.0;
        for (Index i = 0; i < J; ++i) {
            const double lambda = diag[static_cast<std::size_t>(i)];
            if (!(lambda > 0.0)) throw NotPositiveDefinite(i + 1);
            const double z0 = Z[static_cast<std::size_t>(i * J)];  // first entry of eigenvector i
            q += z0 * z0 * std::log(lambda);
        }
        return q;
    }

    /// The estimate at theta (and its gradient); with store, the fitted caches are kept.
    double evaluate(const std::vector<double>& theta, double* gradient, std::uint64_t seed, bool store)
    {
        const Index kp = static_cast<Index>(theta.size()) - 1;
        const kernels::AnyKernel kern = kernels::kernel_with_theta(kernel_, std::span<const double>(theta).first(static_cast<std::size_t>(kp)));
        const double sigma2 = std::exp(theta.back());
        const Structure s = make_structure(kern, axes_);
        const Preconditioner P = make_preconditioner(s, sigma2);
        const Index t = options_.n_probes, c = t + 1;
        const std::size_t nc = static_cast<std::size_t>(n_ * c);
        // B = [y, z_1 .. z_t], z_j = L e + sigma e'
        const auto t_probes = std::chrono::steady_clock::now();
        std::vector<double> B(nc), X(nc), Z0(nc);
        for (Index i = 0; i < n_; ++i) B[static_cast<std::size_t>(i * c)] = y_[i];
        // by row chunks (each writes its own rows of B for all probes: the (n, c) block is
        // streamed once, not once per probe), each probe's stream positioned at the chunk's
        // first normal: the same numbers as drawing probe j's stream from its start
        parallel_chunks("kiss_probes", n_, row_chunk, [&](Index b, Index e) {
            std::vector<double> e1(static_cast<std::size_t>(P.k));
            const double sd = std::sqrt(sigma2);
            for (Index j = 0; j < t; ++j) {
                NormalStream rng(seed, static_cast<std::uint64_t>(j));
                for (double& v : e1) v = rng.next();
                rng.skip_to(static_cast<std::uint64_t>(P.k + b));
                for (Index i = b; i < e; ++i) {
                    double v = sd * rng.next();
                    for (Index l = 0; l < P.k; ++l) v += P.L[static_cast<std::size_t>(i * P.k + l)] * e1[static_cast<std::size_t>(l)];
                    B[static_cast<std::size_t>(i * c + j + 1)] = v;
                }
            }
        });
        timings_.probes += seconds_since(t_probes);
        std::vector<std::vector<double>> tri;
        std::vector<double> rz0(static_cast<std::size_t>(c));  // z_j^T P^{-1} z_j
        // the y column of a fit is solved to the prediction tolerance (alpha is cached for predict)
        std::vector<double> tol(static_cast<std::size_t>(c), options_.cg_tol);
        if (store) tol[0] = predict_tol();
        cg(s, sigma2, P, nullptr, c, X.data(), Z0.data(), &tri, last_iterations_, &B, rz0.data(), &tol);
        const auto t_slq = std::chrono::steady_clock::now();
        double quad = 0.0;
        for (Index i = 0; i < n_; ++i) quad += y_[i] * X[static_cast<std::size_t>(i * c)];
        double logdet = P.logdet;
        for (Index j = 1; j < c; ++j)
            logdet += rz0[static_cast<std::size_t>(j)] * lanczos_log_quadrature(tri[static_cast<std::size_t>(j)]) / static_cast<double>(t);
        timings_.slq += seconds_since(t_slq);
        const double lml = -0.5 * quad - 0.5 * logdet - 0.5 * static_cast<double>(n_) * std::log(2.0 * std::numbers::pi);

        if (gradient != nullptr || store) {
            const auto t_grad = std::chrono::steady_clock::now();
            Workspace w(n_, m_, c);
            std::vector<double> Gu(static_cast<std::size_t>(m_ * c)), Gz(static_cast<std::size_t>(m_ * c));
            scatter(X.data(), c, Gu.data());  // W^T [alpha, u_1 .. u_t]
            if (store) {
                std::vector<double> g0(static_cast<std::size_t>(m_)), a(static_cast<std::size_t>(m_)), work(static_cast<std::size_t>(m_));
                for (Index u = 0; u < m_; ++u) g0[static_cast<std::size_t>(u)] = Gu[static_cast<std::size_t>(u * c)];
                kron(s, value_factors(s), s.s0, g0.data(), a.data(), work.data(), 1);  // a = K_UU W^T alpha
                a_ = std::move(a);
                alpha_.resize(static_cast<std::size_t>(n_));
                for (Index i = 0; i < n_; ++i) alpha_[static_cast<std::size_t>(i)] = X[static_cast<std::size_t>(i * c)];
                kernel_ = kern;
                noise_ = sigma2;
                cached_ = s;
                cached_precond_ = P;
                love_.clear();
                love_rank_ = 0;
                fitted_ = true;
            }
            if (gradient != nullptr) {
                scatter(Z0.data(), c, Gz.data());  // W^T [., P^{-1} z_1 .. P^{-1} z_t]
                for (Index u = 0; u < m_; ++u) Gz[static_cast<std::size_t>(u * c)] = Gu[static_cast<std::size_t>(u * c)];
                std::vector<double> H(static_cast<std::size_t>(m_ * c)), dots(static_cast<std::size_t>(c));
                const auto grad_of = [&](double dot0, const double* dj) {
                    double tr = 0.0;
                    for (Index j = 1; j < c; ++j) tr += dj[j];
                    return 0.5 * dot0 - 0.5 * tr / static_cast<double>(t);
                };
                const auto grid_dots = [&](const double* A, const double* Bm, double* out) {
                    std::fill(out, out + c, 0.0);
                    for (Index u = 0; u < m_; ++u)
                        for (Index j = 0; j < c; ++j) out[j] += A[u * c + j] * Bm[u * c + j];
                };
                std::vector<double> acc(static_cast<std::size_t>(c));
                // dK_UU W^T [alpha, u] = (ds0_p / s0) K_UU W^T [alpha, u] + the dT_{p,k} terms
                // (file header); K_UU W^T [alpha, u] is formed once, only if some ds0_p != 0
                std::vector<double> base_dots;
                for (Index p = 0; p < kp; ++p) {
                    std::fill(acc.begin(), acc.end(), 0.0);
                    const double scale0 = s.ds0[static_cast<std::size_t>(p)];
                    if (scale0 != 0.0) {
                        if (base_dots.empty()) {
                            base_dots.resize(static_cast<std::size_t>(c));
                            kron(s, value_factors(s), s.s0, Gu.data(), H.data(), w.work.data(), c);
                            grid_dots(Gz.data(), H.data(), base_dots.data());
                        }
                        for (Index j = 0; j < c; ++j) acc[static_cast<std::size_t>(j)] += scale0 * base_dots[static_cast<std::size_t>(j)];
                    }
                    for (const auto& [dim, factor] : s.dT[static_cast<std::size_t>(p)]) {
                        std::vector<const ToeplitzFactor*> f = value_factors(s);
                        f[static_cast<std::size_t>(dim)] = &factor;
                        kron(s, f, s.s0, Gu.data(), H.data(), w.work.data(), c);
                        grid_dots(Gz.data(), H.data(), dots.data());
                        for (Index j = 0; j < c; ++j) acc[static_cast<std::size_t>(j)] += dots[static_cast<std::size_t>(j)];
                    }
                    gradient[p] = grad_of(acc[0], acc.data());
                }
                // log sigma2: dK = sigma2 I
                column_dots(Z0.data(), X.data(), c, dots.data());
                double aa = 0.0;
                for (Index i = 0; i < n_; ++i) aa += X[static_cast<std::size_t>(i * c)] * X[static_cast<std::size_t>(i * c)];
                gradient[kp] = sigma2 * grad_of(aa, dots.data());
            }
            timings_.gradient += seconds_since(t_grad);
        }
        if (store) lml_ = lml;
        return lml;
    }

    kernels::AnyKernel kernel_;
    double noise_;
    const double* X_;
    const double* y_;
    Index n_, d_;
    KissGPOptions options_;
    std::vector<GridAxis> axes_;
    Index m_ = 1;
    Interpolation W_;
    // fitted state
    bool fitted_ = false;
    std::vector<double> love_;  ///< C = K_UU W^T Q L_T^{-T}, (m, love_rank_) row-major
    Index love_rank_ = 0;
    Index love_requested_ = 0;
    double lml_ = 0.0;
    std::vector<double> alpha_, a_;
    Structure cached_;
    Preconditioner cached_precond_;
    std::vector<Index> last_iterations_;
    KissTimings timings_;
    mutable std::mutex mutex_;
};

}  // namespace gprat::approx::kiss_gp
