#pragma once
/// SGPR: sparse GP regression with Titsias' (2009) collapsed variational bound, M inducing
/// points Z (M x d), tiled over the n training points: no n x n and no n x M matrix is formed.
///
/// Notation (sigma2 the noise variance, K_ZX = k(Z, X), y the n targets):
///   K_ZZ + jitter I = L L^T                         (M x M)
///   Psi2 = K_ZX K_XZ = sum over row tiles,  psi1 = K_ZX y,  t = sum_i k(x_i, x_i),  yy = y^T y
///   P = L^{-1} Psi2 L^{-T},  B = I + P / sigma2 = L_B L_B^T
///   c = L_B^{-1} L^{-1} psi1 / sigma2,  e = L_B^{-T} c,  a~ = L^{-T} e
/// Bound (log N(y | 0, Q + sigma2 I) - tr(K_XX - Q) / (2 sigma2), Q = K_XZ K_ZZ^{-1} K_ZX):
///   F = -n/2 log(2 pi) - n/2 log sigma2 - sum_j log L_B,jj - yy/(2 sigma2) + |c|^2/2
///       - t/(2 sigma2) + tr(P)/(2 sigma2)
/// (log det(Q + sigma2 I) = n log sigma2 + log det B; Woodbury for the quadratic form.)
/// Closed-form gradient. F depends on the kernel through K_ZZ, Psi2, psi1 and t; with
/// dF = tr(G_ZZ dK_ZZ) + tr(G_Psi2 dPsi2) + g_psi1^T dpsi1 - dt / (2 sigma2):
///   G_ZZ   = L^{-T} [I - B/2 - B^{-1}/2 - e e^T/2] L^{-1}
///   G_Psi2 = L^{-T} [I - B^{-1} - e e^T] L^{-1} / (2 sigma2)
///   g_psi1 = a~ / sigma2
/// and since dPsi2 = dK_ZX K_XZ + K_ZX dK_XZ, dpsi1 = dK_ZX y, the weight of dK_ZX(j, i) is
///   W = 2 G_Psi2 K_ZX + g_psi1 y^T      (M x nb per row tile, never M x n at once)
/// so, for theta_p a kernel log-parameter and z_j an inducing point,
///   dF/dtheta_p = sum_ji W_ji dk(z_j, x_i)/dtheta_p + sum_jl G_ZZ,jl dk(z_j, z_l)/dtheta_p
///                 - 1/(2 sigma2) sum_i dk(x_i, x_i)/dtheta_p
///   dF/dz_j     = sum_i W_ji dk(x_i, z_j)/dz_j + 2 sum_l G_ZZ,jl dk(z_l, z_j)/dz_j
///   dF/dsigma2  = -n/(2 sigma2) + [tr(B^{-1} P) + e^T P e + yy + t - tr(P)] / (2 sigma2^2)
///                 - |c|^2 / sigma2,     dF/dlog sigma2 = sigma2 dF/dsigma2.
/// Prediction at x* (k* = k(Z, x*)): mean = k*^T a~,
///   var = k(x*, x*) - |L^{-1} k*|^2 + |L_B^{-1} L^{-1} k*|^2   (+ sigma2 with include_noise),
///   cov = K** - V^T V + W^T W,  V = L^{-1} K_Z*, W = L_B^{-1} V.
/// With Z = X (and no jitter) Q = K and F is the exact log marginal likelihood.
///
/// Cost: O(n M^2) for the passes over the row tiles (one syrk per tile for the bound, one gemm
/// more for the gradient) and O(M^3) for the M x M algebra, done once per evaluation in the
/// calling thread (LAPACK on one M x M tile). Each row tile is one task; tile i adds its sums to
/// accumulator slot i mod S, S = min(row tiles, sgpr_slots): tasks writing one slot run in
/// submission order, and the slots are summed in a fixed order, so the result does not depend on
/// the thread count (bitwise) and depends on the tile size only through rounding.
/// Memory: S (M^2 + M + 2) doubles of accumulators, O(M^2) for the algebra, and per running task
/// two M x nb tiles: evaluation_bytes.
///
/// Precision: X and y are read in T (float or double); every computation runs in double (each
/// task converts its row tile), so float32 inputs lose nothing beyond their own rounding.
/// theta = log [kernel parameters..., sigma2].
///
/// Thread safety: one call at a time (a mutex serializes them).
#include <algorithm>
#include <cmath>
#include <mutex>
#include <numbers>
#include <optional>
#include <span>
#include <variant>
#include <vector>

#include "gprat/core/check.hpp"
#include "gprat/core/errors.hpp"
#include "gprat/kernels/any_kernel.hpp"
#include "gprat/kernels/assemble.hpp"
#include "gprat/linalg/tile_kernels.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "gprat/tiles/tile_view.hpp"

namespace gprat::gp {

/// The most accumulator slots an SGPR pass uses (see the header: fixed, not the thread count).
inline constexpr Index sgpr_slots = 8;

namespace detail {

using DenseView = tiles::TileView<double>;

/// A column-major n x m view of v (ld = rows).
inline DenseView view(std::vector<double>& v, Index rows, Index cols)
{
    return DenseView(v.data(), rows, cols, std::max<Index>(rows, 1));
}

/// a <- (a + a^T) / 2 from its lower triangle (upper = lower) or from both triangles (average).
inline void symmetrize(std::vector<double>& a, Index m, bool from_lower)
{
    for (Index j = 0; j < m; ++j)
        for (Index i = j + 1; i < m; ++i) {
            const double v = from_lower ? a[i + j * m] : 0.5 * (a[i + j * m] + a[j + i * m]);
            a[i + j * m] = v;
            a[j + i * m] = v;
        }
}

/// Zero the strict upper triangle (a Cholesky factor held in a full array).
inline void zero_upper(std::vector<double>& a, Index m)
{
    for (Index j = 1; j < m; ++j)
        for (Index i = 0; i < j; ++i) a[i + j * m] = 0.0;
}

/// G <- L^{-T} G L^{-1} (full M x M), symmetrized.
inline void sandwich_inverse(const std::vector<double>& L, std::vector<double>& G, Index m)
{
    std::vector<double>& Lc = const_cast<std::vector<double>&>(L);
    // G <- L^{-T} G;  G <- G L^{-1}
    linalg::tile::trsm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, view(Lc, m, m), view(G, m, m));
    linalg::tile::trsm(Side::Right, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, view(Lc, m, m), view(G, m, m));
    symmetrize(G, m, false);
}

}  // namespace detail

template <typename T>
class SGPR
{
    using DenseView = detail::DenseView;

  public:
    /// @param X  row-major (n, d) inputs, @param y (n) targets: borrowed, they must outlive the model.
    /// @param Z  row-major (m, d) inducing points (copied), 1 <= m <= n.
    /// @param tile_size rows per tile (nullopt: min(n, 256)).
    SGPR(kernels::AnyKernel kernel, double noise_variance, const T* X, const T* y, Index n, Index d,
         std::vector<double> Z, std::optional<Index> tile_size)
        : kernel_(std::move(kernel)), noise_(noise_variance), X_(X), y_(y), n_(n), d_(d)
    {
        GPRAT_EXPECTS(n >= 1 && d >= 1, "SGPR needs at least one training point with at least one feature; got n="
                                            << n << ", d=" << d);
        kernels::check_features(kernel_, d);
        GPRAT_EXPECTS(std::isfinite(noise_variance) && noise_variance > 0,
                      "noise_variance must be positive and finite; got " << noise_variance);
        set_inducing_points(std::move(Z));
        nb_ = tile_size ? *tile_size : std::min<Index>(n, 256);
        GPRAT_EXPECTS(nb_ > 0, "tile_size must be a positive integer; got " << nb_);
        nb_ = std::min(nb_, n);
    }

    Index n() const noexcept { return n_; }
    Index d() const noexcept { return d_; }
    Index m() const noexcept { return m_; }
    Index tile_size() const noexcept { return nb_; }
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
    double jitter() const
    {
        std::lock_guard lock(mutex_);
        return jitter_;
    }
    void set_jitter(double jitter)
    {
        GPRAT_EXPECTS(std::isfinite(jitter) && jitter >= 0, "jitter must be finite and >= 0; got " << jitter);
        std::lock_guard lock(mutex_);
        jitter_ = jitter;
        fitted_ = false;
    }
    std::vector<double> theta() const
    {
        std::lock_guard lock(mutex_);
        std::vector<double> t = kernels::kernel_theta(kernel_);
        t.push_back(std::log(noise_));
        return t;
    }
    void set_theta(std::span<const double> theta)
    {
        auto [k, s2] = split_theta(theta);
        std::lock_guard lock(mutex_);
        kernel_ = std::move(k);
        noise_ = s2;
        fitted_ = false;
    }
    /// Z, row-major (m, d).
    std::vector<double> inducing_points() const
    {
        std::lock_guard lock(mutex_);
        return Z_;
    }
    void set_inducing_points(std::vector<double> Z)
    {
        GPRAT_EXPECTS(!Z.empty() && Z.size() % static_cast<std::size_t>(d_) == 0,
                      "inducing points must be a non-empty (m, " << d_ << ") array; got " << Z.size() << " numbers");
        const Index m = static_cast<Index>(Z.size()) / d_;
        GPRAT_EXPECTS(m <= n_, "SGPR needs at most as many inducing points as training points; got m=" << m
                                                                                                       << " > n=" << n_);
        for (double v : Z) GPRAT_EXPECTS(std::isfinite(v), "inducing points must be finite; got " << v);
        std::lock_guard lock(mutex_);
        Z_ = std::move(Z);
        m_ = m;
        fitted_ = false;
    }

    /// The bound at the current theta and Z; caches what predict needs.
    /// @throws NotPositiveDefinite if K_ZZ + jitter I is not positive definite.
    double fit()
    {
        std::lock_guard lock(mutex_);
        return fit_locked();
    }

    /// The bound at (theta, Z) (Z empty: the model's), and when grad_theta / grad_Z are not null
    /// its gradient (n_params entries; m * d entries, row-major). The model is not changed.
    double bound(std::span<const double> theta, std::span<const double> Z, double* grad_theta, double* grad_Z)
    {
        auto [k, s2] = split_theta(theta);
        std::unique_lock lock(mutex_);
        std::vector<double> z = Z.empty() ? Z_ : std::vector<double>(Z.begin(), Z.end());
        GPRAT_EXPECTS(static_cast<Index>(z.size()) == m_ * d_,
                      "Z must have " << m_ << " x " << d_ << " entries (as the model's); got " << z.size());
        for (double v : z) GPRAT_EXPECTS(std::isfinite(v), "inducing points must be finite; got " << v);
        const double jitter = jitter_;
        lock.unlock();
        Factors f;
        return evaluate(k, s2, z, jitter, grad_theta, grad_Z, f);
    }

    /// mean (m), variance (m, or null), covariance (m x m row-major, or null) at the rows of Xs.
    void predict(const T* Xs, Index ms, T* mean, T* variance, T* covariance, bool include_noise)
    {
        std::lock_guard lock(mutex_);
        if (!fitted_) fit_locked();
        if (ms == 0) return;
        const Index M = m_;
        const double add = include_noise ? noise_ : 0.0;
        std::vector<double> xs(static_cast<std::size_t>(ms * d_));
        for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<double>(Xs[i]);
        runtime::TaskGraph g;
        g.add("sgpr_predict", 0, [&] { std::visit(
            [&](const auto& kern) {
                // K_Z* (M x ms); V = L^{-1} K_Z*; W = L_B^{-1} V
                std::vector<double> Kzs(static_cast<std::size_t>(M * ms));
                kernels::fill_cross_covariance_tile(detail::view(Kzs, M, ms), Z_.data(), 0, xs.data(), 0, d_, kern);
                for (Index j = 0; j < ms; ++j) {
                    double s = 0.0;
                    for (Index a = 0; a < M; ++a) s += Kzs[static_cast<std::size_t>(a + j * M)] * state_.atilde[static_cast<std::size_t>(a)];
                    mean[j] = static_cast<T>(s);
                }
                if (!variance && !covariance) return;
                std::vector<double> V = Kzs;
                linalg::tile::trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, detail::view(state_.L, M, M),
                                   detail::view(V, M, ms));
                std::vector<double> W = V;
                linalg::tile::trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, detail::view(state_.LB, M, M),
                                   detail::view(W, M, ms));
                if (variance) {
                    for (Index j = 0; j < ms; ++j) {
                        double v = kern.diagonal(xs.data() + j * d_, d_) + add;
                        for (Index a = 0; a < M; ++a) {
                            const double vv = V[static_cast<std::size_t>(a + j * M)], ww = W[static_cast<std::size_t>(a + j * M)];
                            v += ww * ww - vv * vv;
                        }
                        variance[j] = static_cast<T>(std::max(v, 0.0));
                    }
                }
                if (covariance) {
                    // cov = K** - V^T V + W^T W  (lower triangle, then mirrored)
                    std::vector<double> C(static_cast<std::size_t>(ms * ms));
                    kernels::fill_covariance_tile(detail::view(C, ms, ms), xs.data(), 0, xs.data(), 0, d_, kern, true, add);
                    linalg::tile::syrk(Op::Trans, -1.0, detail::view(V, M, ms), 1.0, detail::view(C, ms, ms));
                    linalg::tile::syrk(Op::Trans, 1.0, detail::view(W, M, ms), 1.0, detail::view(C, ms, ms));
                    for (Index j = 0; j < ms; ++j)
                        for (Index i = j; i < ms; ++i) {
                            const T v = static_cast<T>(C[static_cast<std::size_t>(i + j * ms)]);
                            covariance[i * ms + j] = v;
                            covariance[j * ms + i] = v;
                        }
                }
            },
            kernel_); });
        g.wait();
    }

    /// The variational posterior over u = f(Z) that maximizes the bound (Titsias):
    /// mean_u = K_ZZ a~, cov_u = L B^{-1} L^T (= K_ZZ Sigma^{-1} K_ZZ); row-major M x M.
    void optimal_q(double* mean_u, double* cov_u)
    {
        std::lock_guard lock(mutex_);
        if (!fitted_) fit_locked();
        const Index M = m_;
        std::vector<double> LBi = state_.LB;  // L_B^{-1}, then W = L L_B^{-T}
        linalg::tile::trtri(detail::view(LBi, M, M), 0);
        detail::zero_upper(LBi, M);
        std::vector<double> Wm = state_.L;  // L (lower), times L_B^{-T}: trmm right with L_B^{-1}^T
        linalg::tile::trmm(Side::Right, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, detail::view(LBi, M, M),
                           detail::view(Wm, M, M));
        std::vector<double> C(static_cast<std::size_t>(M * M), 0.0);
        linalg::tile::syrk(Op::NoTrans, 1.0, detail::view(Wm, M, M), 0.0, detail::view(C, M, M));
        detail::symmetrize(C, M, true);
        for (std::size_t i = 0; i < C.size(); ++i) cov_u[i] = C[i];  // symmetric: row-major = column-major
        // K_ZZ a~ = L L^T a~ = L e
        for (Index i = 0; i < M; ++i) {
            double s = 0.0;
            for (Index j = 0; j <= i; ++j) s += state_.L[static_cast<std::size_t>(i + j * M)] * state_.e[static_cast<std::size_t>(j)];
            mean_u[i] = s;
        }
    }

    /// Bytes one bound-and-gradient evaluation allocates, for M inducing points, tile size nb,
    /// n training points, d features and `workers` running tasks.
    static std::size_t evaluation_bytes(Index n, Index M, Index nb, Index d, Index n_params, Index workers)
    {
        const auto z = [](Index v) { return static_cast<std::size_t>(std::max<Index>(v, 0)); };
        const Index nt = (n + nb - 1) / std::max<Index>(nb, 1);
        const Index slots = std::min(nt, sgpr_slots);
        const std::size_t accum = z(slots) * (z(M * M) + z(M) + 2 + z(n_params) + z(M * d));
        const std::size_t algebra = 10 * z(M * M);
        const std::size_t per_task = 2 * z(M * nb) + z(nb * (d + 1));
        return (accum + algebra + z(std::min(workers, nt)) * per_task) * sizeof(double);
    }

  private:
    /// What predict and optimal_q reuse from the last fit.
    struct Factors
    {
        std::vector<double> L, LB, atilde, e;
    };

    std::pair<kernels::AnyKernel, double> split_theta(std::span<const double> theta) const
    {
        const Index kp = kernels::kernel_params(kernel_);
        GPRAT_EXPECTS(static_cast<Index>(theta.size()) == kp + 1,
                      "theta must have " << kp + 1 << " entries (kernel, then log noise_variance); got " << theta.size());
        for (double v : theta) GPRAT_EXPECTS(std::isfinite(v), "theta must be finite; got " << v);
        const double s2 = std::exp(theta.back());
        GPRAT_EXPECTS(std::isfinite(s2) && s2 > 0, "noise_variance = exp(" << theta.back() << ") must be positive and finite");
        return {kernels::kernel_with_theta(kernel_, theta.first(static_cast<std::size_t>(kp))), s2};
    }

    double fit_locked()
    {
        Factors f;
        const double F = evaluate(kernel_, noise_, Z_, jitter_, nullptr, nullptr, f);
        state_ = std::move(f);
        fitted_ = true;
        return F;
    }

    /// Row tile i: the points X[r0 .. r0 + rows) and their targets, converted to double.
    void load_tile(Index i, std::vector<double>& xs, std::vector<double>& ys, Index& rows) const
    {
        const Index r0 = i * nb_;
        rows = std::min(nb_, n_ - r0);
        xs.resize(static_cast<std::size_t>(rows * d_));
        ys.resize(static_cast<std::size_t>(rows));
        for (Index a = 0; a < rows * d_; ++a) xs[static_cast<std::size_t>(a)] = static_cast<double>(X_[r0 * d_ + a]);
        for (Index a = 0; a < rows; ++a) ys[static_cast<std::size_t>(a)] = static_cast<double>(y_[r0 + a]);
    }

    /// The bound (and its gradient) at kernel k, noise s2, inducing points Z; the factors into f.
    /// Runs as one task on a runtime worker, like the rest of the engine's BLAS calls (single-
    /// threaded BLAS there; see gp/svgp.hpp for why not the calling thread); the row-tile passes
    /// are a nested graph.
    double evaluate(const kernels::AnyKernel& kernel, double s2, const std::vector<double>& Z, double jitter,
                    double* grad_theta, double* grad_Z, Factors& f) const
    {
        double out = 0.0;
        runtime::TaskGraph g;
        g.add("sgpr_evaluate", 0, [&] {
            out = std::visit([&](const auto& k) { return evaluate_with(k, s2, Z, jitter, grad_theta, grad_Z, f); },
                             kernel);
        });
        g.wait();
        return out;
    }

    template <typename K>
    double evaluate_with(const K& k, double s2, const std::vector<double>& Zv, double jitter, double* grad_theta,
                         double* grad_Z, Factors& f) const
    {
        using detail::view;
        const Index M = static_cast<Index>(Zv.size()) / d_, d = d_, n = n_;
        const double* Z = Zv.data();
        const std::size_t MM = static_cast<std::size_t>(M * M);
        const Index nt = (n + nb_ - 1) / nb_;
        const Index slots = std::min(nt, sgpr_slots);

        // K_ZZ + jitter I = L L^T
        std::vector<double> L(MM);
        kernels::fill_covariance_tile(view(L, M, M), Z, 0, Z, 0, d, k, true, jitter);
        linalg::tile::potrf(view(L, M, M), 0);
        detail::zero_upper(L, M);

        // pass 1: slot s holds [Psi2 (M x M, lower) | psi1 (M) | t | yy]
        const std::size_t stride1 = MM + static_cast<std::size_t>(M) + 2;
        std::vector<double> acc(static_cast<std::size_t>(slots) * stride1, 0.0);
        {
            runtime::TaskGraph g;
            for (Index i = 0; i < nt; ++i) {
                double* slot = acc.data() + static_cast<std::size_t>(i % slots) * stride1;
                g.add("sgpr_sums", 0,
                      [this, &k, Z, M, d, i](double* s) {
                          std::vector<double> xs, ys, kzx;
                          Index rows = 0;
                          load_tile(i, xs, ys, rows);
                          kzx.resize(static_cast<std::size_t>(M * rows));
                          // K_ZX tile (M x rows)
                          kernels::fill_cross_covariance_tile(view(kzx, M, rows), Z, 0, xs.data(), 0, d, k);
                          // Psi2 += K_ZX K_XZ;  psi1 += K_ZX y
                          DenseView psi2(s, M, M, M), psi1(s + M * M, M, 1, M);
                          linalg::tile::syrk(Op::NoTrans, 1.0, view(kzx, M, rows), 1.0, psi2);
                          linalg::tile::gemm(Op::NoTrans, Op::NoTrans, 1.0, view(kzx, M, rows), view(ys, rows, 1), 1.0,
                                             psi1);
                          double t = 0.0, yy = 0.0;
                          for (Index a = 0; a < rows; ++a) {
                              t += k.diagonal(xs.data() + a * d, d);
                              yy += ys[static_cast<std::size_t>(a)] * ys[static_cast<std::size_t>(a)];
                          }
                          s[M * M + M] += t;
                          s[M * M + M + 1] += yy;
                      },
                      runtime::Write<double*>{slot, stride1 * sizeof(double)});
            }
            g.wait();
        }
        std::vector<double> P(MM, 0.0), b(static_cast<std::size_t>(M), 0.0);
        double t = 0.0, yy = 0.0;
        for (Index s = 0; s < slots; ++s) {
            const double* a = acc.data() + static_cast<std::size_t>(s) * stride1;
            for (std::size_t q = 0; q < MM; ++q) P[q] += a[q];
            for (Index q = 0; q < M; ++q) b[static_cast<std::size_t>(q)] += a[MM + static_cast<std::size_t>(q)];
            t += a[MM + static_cast<std::size_t>(M)];
            yy += a[MM + static_cast<std::size_t>(M) + 1];
        }
        acc.clear();
        acc.shrink_to_fit();
        detail::symmetrize(P, M, true);
        std::vector<double> Psi2 = grad_theta || grad_Z ? P : std::vector<double>();
        // P = L^{-1} Psi2 L^{-T};  b = L^{-1} psi1
        linalg::tile::trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, view(L, M, M), view(P, M, M));
        linalg::tile::trsm(Side::Right, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, view(L, M, M), view(P, M, M));
        detail::symmetrize(P, M, false);
        linalg::tile::trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, view(L, M, M), view(b, M, 1));
        // B = I + P / sigma2 = L_B L_B^T
        std::vector<double> LB(MM);
        for (std::size_t q = 0; q < MM; ++q) LB[q] = P[q] / s2;
        for (Index q = 0; q < M; ++q) LB[static_cast<std::size_t>(q + q * M)] += 1.0;
        std::vector<double> B = grad_theta || grad_Z ? LB : std::vector<double>();
        linalg::tile::potrf(view(LB, M, M), 0);
        detail::zero_upper(LB, M);
        // c = L_B^{-1} b / sigma2
        std::vector<double> c = b;
        linalg::tile::trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0 / s2, view(LB, M, M), view(c, M, 1));
        double logdetB = 0.0, cc = 0.0, trP = 0.0;
        for (Index q = 0; q < M; ++q) {
            logdetB += 2.0 * std::log(LB[static_cast<std::size_t>(q + q * M)]);
            cc += c[static_cast<std::size_t>(q)] * c[static_cast<std::size_t>(q)];
            trP += P[static_cast<std::size_t>(q + q * M)];
        }
        const double nd = static_cast<double>(n);
        const double F = -0.5 * nd * std::log(2.0 * std::numbers::pi) - 0.5 * nd * std::log(s2) - 0.5 * logdetB -
                         0.5 * yy / s2 + 0.5 * cc - 0.5 * t / s2 + 0.5 * trP / s2;
        // e = L_B^{-T} c;  a~ = L^{-T} e
        std::vector<double> e = c;
        linalg::tile::trsm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, view(LB, M, M), view(e, M, 1));
        std::vector<double> at = e;
        linalg::tile::trsm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, view(L, M, M), view(at, M, 1));
        if (!(grad_theta || grad_Z)) {
            f.L = std::move(L);
            f.LB = std::move(LB);
            f.atilde = std::move(at);
            f.e = std::move(e);
            return F;
        }

        // B^{-1} = L_B^{-T} L_B^{-1}
        std::vector<double> Binv = LB;
        linalg::tile::trtri(view(Binv, M, M), 0);
        linalg::tile::lauum(view(Binv, M, M));
        detail::symmetrize(Binv, M, true);
        // G_Psi2 and G_ZZ (header)
        std::vector<double> Gp(MM), Gz(MM);
        double trBinvP = 0.0, ePe = 0.0;
        for (Index j = 0; j < M; ++j)
            for (Index i = 0; i < M; ++i) {
                const std::size_t q = static_cast<std::size_t>(i + j * M);
                const double eye = i == j ? 1.0 : 0.0, ee = e[static_cast<std::size_t>(i)] * e[static_cast<std::size_t>(j)];
                Gp[q] = (eye - Binv[q] - ee) / (2.0 * s2);
                Gz[q] = eye - 0.5 * B[q] - 0.5 * Binv[q] - 0.5 * ee;
                trBinvP += Binv[q] * P[q];
                ePe += ee * P[q];
            }
        detail::sandwich_inverse(L, Gp, M);
        detail::sandwich_inverse(L, Gz, M);
        const double dF_ds2 = -0.5 * nd / s2 + (trBinvP + ePe + yy + t - trP) / (2.0 * s2 * s2) - cc / s2;

        // pass 2: slot s holds [theta sums (np) | Z gradient (M x d)]
        const Index np = k.n_params();
        const std::size_t stride2 = static_cast<std::size_t>(np + M * d);
        std::vector<double> acc2(static_cast<std::size_t>(slots) * stride2, 0.0);
        std::vector<double> g_psi1 = at;
        for (double& v : g_psi1) v /= s2;
        {
            runtime::TaskGraph g;
            for (Index i = 0; i < nt; ++i) {
                double* slot = acc2.data() + static_cast<std::size_t>(i % slots) * stride2;
                g.add("sgpr_gradient", 0,
                      [this, &k, &Gp, &g_psi1, Z, M, d, np, s2, i](double* s) {
                          std::vector<double> xs, ys, kzx, w;
                          Index rows = 0;
                          load_tile(i, xs, ys, rows);
                          kzx.resize(static_cast<std::size_t>(M * rows));
                          w.resize(static_cast<std::size_t>(M * rows));
                          kernels::fill_cross_covariance_tile(view(kzx, M, rows), Z, 0, xs.data(), 0, d, k);
                          // W = 2 G_Psi2 K_ZX + g_psi1 y^T
                          std::vector<double>& Gpc = const_cast<std::vector<double>&>(Gp);
                          std::vector<double>& gpc = const_cast<std::vector<double>&>(g_psi1);
                          linalg::tile::gemm(Op::NoTrans, Op::NoTrans, 2.0, view(Gpc, M, M), view(kzx, M, rows), 0.0,
                                             view(w, M, rows));
                          linalg::tile::gemm(Op::NoTrans, Op::Trans, 1.0, view(gpc, M, 1), view(ys, rows, 1), 1.0,
                                             view(w, M, rows));
                          kernels::accumulate_inducing_gradient(view(w, M, rows), Z, 0, xs.data(), 0, d, k, false, 1.0,
                                                                1.0, s, s + np);
                          kernels::accumulate_diagonal_gradient(xs.data(), 0, rows, d, k, -0.5 / s2, s);
                      },
                      runtime::Write<double*>{slot, stride2 * sizeof(double)});
            }
            g.wait();
        }
        std::vector<double> gt(static_cast<std::size_t>(np), 0.0), gz(static_cast<std::size_t>(M * d), 0.0);
        for (Index s = 0; s < slots; ++s) {
            const double* a = acc2.data() + static_cast<std::size_t>(s) * stride2;
            for (Index q = 0; q < np; ++q) gt[static_cast<std::size_t>(q)] += a[q];
            for (Index q = 0; q < M * d; ++q) gz[static_cast<std::size_t>(q)] += a[np + q];
        }
        // the K_ZZ term: theta weight G_ZZ, input weight 2 G_ZZ (header)
        kernels::accumulate_inducing_gradient(view(Gz, M, M), Z, 0, Z, 0, d, k, true, 1.0, 2.0, gt.data(), gz.data());
        if (grad_theta) {
            for (Index q = 0; q < np; ++q) grad_theta[q] = gt[static_cast<std::size_t>(q)];
            grad_theta[np] = s2 * dF_ds2;
        }
        if (grad_Z)
            for (Index q = 0; q < M * d; ++q) grad_Z[q] = gz[static_cast<std::size_t>(q)];
        f.L = std::move(L);
        f.LB = std::move(LB);
        f.atilde = std::move(at);
        f.e = std::move(e);
        return F;
    }

    kernels::AnyKernel kernel_;
    double noise_;
    const T* X_;
    const T* y_;
    Index n_, d_, m_ = 0, nb_ = 1;
    std::vector<double> Z_;
    double jitter_ = 0.0;
    bool fitted_ = false;
    Factors state_;
    mutable std::mutex mutex_;
};

}  // namespace gprat::gp
