#pragma once
/// SVGP: stochastic variational GP regression (Hensman et al. 2013) with a whitened
/// variational distribution, minibatch ELBO and its closed-form gradient, natural-gradient
/// steps for q (Salimbeni et al. 2018) and prediction. The engine is stateless in the
/// parameters: every call takes (theta, Z, m, C), so the optimizer loop (Python) owns them.
///
/// Setup. K_ZZ + jitter I = L L^T (M x M); whitened q(v) = N(m, S), S = C C^T (C lower), u = L v.
/// Minibatch B of b points out of N, s = N / b (scale), sigma2 the noise variance:
///   A = L^{-1} K_ZB,  mu = A^T m,  var_i = k(x_i, x_i) - |A_i|^2 + |C^T A_i|^2
///   ELBO_B = s sum_i [-1/2 log(2 pi sigma2) - ((y_i - mu_i)^2 + var_i) / (2 sigma2)] - KL
///   KL = 1/2 (|C|_F^2 + |m|^2 - M - 2 sum_j log|C_jj|)
/// Gradient (reverse mode; r_i = s (y_i - mu_i) / sigma2, w = -s / (2 sigma2)):
///   dE/dm = A r - m,   dE/dC = tril(2 w A A^T C) - tril(C) + diag(1 / C_jj)
///   dE/dlog sigma2 = s sum_i [-1/2 + ((y_i - mu_i)^2 + var_i) / (2 sigma2)]
///   Abar = dE/dA = m r^T + 2 w (C C^T A - A)
///   trsm reverse (A = L^{-1} K_ZB):  Kbar_ZB = L^{-T} Abar
///   potrf reverse (Murray 2016, arXiv 1602.07527): with Phi(X) = tril(X) with its diagonal
///     halved, dL = L Phi(L^{-1} dK_ZZ L^{-T}), so dA = -Phi(L^{-1} dK_ZZ L^{-T}) A and, Phi
///     being self-adjoint, Kbar_ZZ = -L^{-T} sym(Phi(Abar A^T)) L^{-1}, sym(X) = (X + X^T)/2
///   and the kernel parameters and Z through the per-pair derivatives (kernels/assemble.hpp):
///   dE/dtheta_p = sum Kbar_ZB dK_ZB/dtheta_p + sum Kbar_ZZ dK_ZZ/dtheta_p + w sum_i dk(x_i, x_i)/dtheta_p
///   dE/dz_j     = sum_i Kbar_ZB,ji dk(x_i, z_j)/dz_j + 2 sum_l Kbar_ZZ,jl dk(z_l, z_j)/dz_j.
/// Natural gradient step of size gamma on the minibatch (Gaussian likelihood, whitened):
///   Lambda <- (1 - gamma) S^{-1} + gamma (I + s A A^T / sigma2)
///   eta    <- (1 - gamma) S^{-1} m + gamma s A y / sigma2
///   S <- Lambda^{-1}, m <- S eta, C <- chol(S).
/// With gamma = 1 on the full batch (s = 1) this is the optimal q of SGPR (gp/sgpr.hpp) in
/// whitened form: m = e, S = B^{-1}.
/// Prediction: A* = L^{-1} K_Z*, mean = A*^T m, var = k** - |A*|^2 + |C^T A*|^2 (+ sigma2),
///   cov = K** - A*^T A* + (C^T A*)^T (C^T A*).
///
/// Cost per minibatch step (NGD, then the ELBO and its gradient at the new q), in flops with
/// b columns and M inducing points: five b M^2 passes (A = L^{-1} K_ZB, A A^T, C^T A, C C^T A,
/// L^{-T} Abar: trsm, syrk, trmm, trmm, trsm) and about (1/3 + 2/3 + 2 + 2) M^3 (potrf of K_ZZ;
/// trtri + lauum for S^{-1}, potrf + trtri for the new q; S P = C C^T P; the sandwich
/// L^{-T} X L^{-1}), plus the K_ZB and K_ZZ assembly and kernel-gradient reductions
/// (O(b M d + M^2 d)). Kbar_ZZ comes from Y = Abar A^T = 2 w (S P - P) + m (A r)^T with
/// P = A A^T (needed by NGD anyway), so no b M^2 gemm is spent on it, and dE/dC = tril(2 w P C)
/// reuses C^T P (and is skipped when the caller, an NGD step, does not ask for it).
/// Parallelism: the minibatch is cut into column chunks of chunk_cols, each a runtime task
/// (single-threaded BLAS in the workers, runtime/executor.hpp), the M x M trsm passes into
/// blocks; per-chunk sums go into a fixed number of slots added in a fixed order, so the result
/// does not depend on the thread count (bitwise). The M^3 algebra of the NGD update runs on
/// tiles of ngd_tile_order (fixed, so results do not depend on the thread count either) as task
/// graphs: S^{-1} = C^{-T} C^{-1} of the old q alongside pass 1 (it needs no minibatch), the
/// factor and inverse of the new Lambda after it. Buffers live in a per-engine workspace (no
/// allocation per step once warm); a mutex serializes calls on one engine. Memory: 2 M x b doubles (b = the rows per call) and a
/// few M x M; an ELBO without gradient or NGD step keeps no M x b matrix (per-chunk buffers).
/// Computation in double whatever the precision T of X and y.
#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <numbers>
#include <span>
#include <variant>
#include <vector>

#include "gprat/core/check.hpp"
#include "gprat/core/errors.hpp"
#include "gprat/gp/sgpr.hpp"
#include "gprat/gp/svgp_gradient.hpp"
#include "gprat/kernels/any_kernel.hpp"
#include "gprat/kernels/assemble.hpp"
#include "gprat/linalg/cholesky.hpp"
#include "gprat/linalg/inverse.hpp"
#include "gprat/linalg/tile_kernels.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "gprat/tiles/tiled_matrix.hpp"

namespace gprat::gp {

/// The variational and model parameters one SVGP call reads (C column-major M x M, lower).
struct SVGPParams
{
    std::span<const double> theta;  ///< log [kernel parameters..., sigma2]
    std::span<const double> Z;      ///< M x d row-major
    std::span<const double> m;      ///< M
    std::span<const double> C;      ///< M x M column-major, lower triangle used
};

/// Gradient outputs of SVGP::elbo (any may be null): theta (n_params), Z (M x d row-major),
/// m (M), C (M x M column-major, lower triangle written, upper zero).
struct SVGPGradient
{
    double* theta = nullptr;
    double* Z = nullptr;
    double* m = nullptr;
    double* C = nullptr;
};

template <typename T>
class SVGP
{
  public:
    SVGP(kernels::AnyKernel kernel, Index d, Index M) : kernel_(std::move(kernel)), d_(d), M_(M)
    {
        GPRAT_EXPECTS(d >= 1 && M >= 1, "SVGP needs d >= 1 features and M >= 1 inducing points; got d=" << d
                                                                                                     << ", M=" << M);
        kernels::check_features(kernel_, d);
    }

    Index d() const noexcept { return d_; }
    Index m() const noexcept { return M_; }
    Index n_params() const { return kernels::kernel_params(kernel_) + 1; }
    double jitter() const noexcept { return jitter_; }
    void set_jitter(double j)
    {
        GPRAT_EXPECTS(std::isfinite(j) && j >= 0, "jitter must be finite and >= 0; got " << j);
        jitter_ = j;
    }

    /// The minibatch ELBO estimate s sum_B ell_i - (include_kl ? KL : 0) and its gradient.
    /// @throws NotPositiveDefinite if K_ZZ + jitter I is not positive definite.
    double elbo(const SVGPParams& p, const T* Xb, const T* yb, Index b, double scale, bool include_kl,
                const SVGPGradient& grad) const
    {
        check(p);
        const auto ks = split(p.theta);
        const double s2 = ks.second;
        return on_worker([&] {
            return std::visit([&](const auto& kern) { return elbo_with(kern, s2, p, Xb, yb, b, scale, include_kl, grad); },
                              ks.first);
        });
    }

    /// One training step's engine work on a minibatch: the natural-gradient step of size gamma
    /// for q (m_out, C_out as in natural_step), then the ELBO estimate and its gradient at the
    /// new q (as elbo), sharing L and A = L^{-1} K_ZB between the two.
    double natural_step_and_elbo(const SVGPParams& p, const T* Xb, const T* yb, Index b, double scale, double gamma,
                                 double* m_out, double* C_out, const SVGPGradient& grad) const
    {
        check(p);
        GPRAT_EXPECTS(std::isfinite(gamma) && gamma > 0 && gamma <= 1, "gamma must be in (0, 1]; got " << gamma);
        GPRAT_EXPECTS(b > 0, "a natural-gradient step needs a non-empty minibatch");
        const auto ks = split(p.theta);
        const double s2 = ks.second;
        return on_worker([&] {
            return std::visit(
                [&](const auto& kern) { return elbo_with(kern, s2, p, Xb, yb, b, scale, true, grad, gamma, m_out, C_out); },
                ks.first);
        });
    }

    /// One natural-gradient step of size gamma for q on a minibatch (header); m_out (M) and
    /// C_out (M x M column-major, lower) receive the new q.
    void natural_step(const SVGPParams& p, const T* Xb, const T* yb, Index b, double scale, double gamma,
                      double* m_out, double* C_out) const
    {
        check(p);
        GPRAT_EXPECTS(std::isfinite(gamma) && gamma > 0 && gamma <= 1, "gamma must be in (0, 1]; got " << gamma);
        const auto ks = split(p.theta);
        const double s2 = ks.second;
        on_worker([&] {
            std::visit([&](const auto& kern) {
                elbo_with(kern, s2, p, Xb, yb, b, scale, false, SVGPGradient{}, gamma, m_out, C_out, false);
            }, ks.first);
            return 0;
        });
    }

    /// mean (ms), variance (ms or null), covariance (ms x ms row-major or null) at Xs.
    void predict(const SVGPParams& p, const T* Xs, Index ms, T* mean, T* variance, T* covariance,
                 bool include_noise) const
    {
        check(p);
        const auto ks = split(p.theta);
        const double s2 = ks.second;
        on_worker([&] {
            std::visit(
                [&](const auto& kern) { predict_with(kern, s2, p, Xs, ms, mean, variance, covariance, include_noise); },
                ks.first);
            return 0;
        });
    }

  private:
    using DenseView = detail::DenseView;

    /// f() run as one task on a runtime worker (header: single-threaded BLAS there); exceptions
    /// are rethrown here by wait().
    template <typename F>
    static auto on_worker(F&& f)
    {
        decltype(f()) out{};
        runtime::TaskGraph g;
        g.add("svgp", 0, [&] { out = f(); });
        g.wait();
        return out;
    }

    void check(const SVGPParams& p) const
    {
        const auto M = static_cast<std::size_t>(M_);
        GPRAT_EXPECTS(static_cast<Index>(p.theta.size()) == n_params(),
                      "theta must have " << n_params() << " entries; got " << p.theta.size());
        GPRAT_EXPECTS(p.Z.size() == M * static_cast<std::size_t>(d_),
                      "Z must be " << M_ << " x " << d_ << "; got " << p.Z.size() << " numbers");
        GPRAT_EXPECTS(p.m.size() == M, "q_mean must have " << M_ << " entries; got " << p.m.size());
        GPRAT_EXPECTS(p.C.size() == M * M, "q_sqrt must be " << M_ << " x " << M_ << "; got " << p.C.size() << " numbers");
    }

    std::pair<kernels::AnyKernel, double> split(std::span<const double> theta) const
    {
        const Index kp = kernels::kernel_params(kernel_);
        for (double v : theta) GPRAT_EXPECTS(std::isfinite(v), "theta must be finite; got " << v);
        return {kernels::kernel_with_theta(kernel_, theta.first(static_cast<std::size_t>(kp))), std::exp(theta.back())};
    }

    /// L = chol(K_ZZ + jitter I), lower, upper zeroed.
    template <typename K>
    std::vector<double> factor(const K& k, const double* Z) const
    {
        std::vector<double> L(static_cast<std::size_t>(M_ * M_));
        kernels::fill_covariance_tile(detail::view(L, M_, M_), Z, 0, Z, 0, d_, k, true, jitter_);
        linalg::tile::potrf(detail::view(L, M_, M_), 0);
        detail::zero_upper(L, M_);
        return L;
    }

    void load(const T* Xb, const T* yb, Index b, std::vector<double>& xs, std::vector<double>& ys) const
    {
        xs.resize(static_cast<std::size_t>(b * d_));
        for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<double>(Xb[i]);
        if (yb) {
            ys.resize(static_cast<std::size_t>(b));
            for (Index i = 0; i < b; ++i) ys[static_cast<std::size_t>(i)] = static_cast<double>(yb[i]);
        }
    }

    /// Column chunks of a minibatch: each is one runtime task (fixed width, not the thread
    /// count, so that the result does not depend on the number of workers).
    static constexpr Index chunk_cols = 256;
    /// Accumulator slots of the per-chunk M x M sums (chunk c adds into slot c mod slots, in
    /// submission order; the slots are summed in a fixed order).
    static constexpr Index max_slots = 4;
    /// Row (or column) blocks of the M x M passes: the sandwich L^{-T} X L^{-1} and the kernel
    /// gradient over K_ZZ.
    static constexpr Index square_blocks = 4;
    /// Padding of the leading dimension of the M x b and M x M buffers read by rows.
    static constexpr Index leading_pad = 8;

    /// Buffers of one call, kept between calls (no allocation per training step once warm).
    struct Workspace
    {
        std::mutex mutex;
        std::vector<double> L, C, mv, xs, ys, A, B, slots, P, Q, G, Gp, Lam, eta, cols, gt;
        tiles::TiledMatrix<double> ngd;  ///< M x M lower tiles for the NGD update's tiled algebra
    };

    /// Tile order of the NGD update's M x M algebra: one tile up to 256 (task overhead would
    /// dominate), else 128, so that M = 512 gives 4 x 4 tiles for two or more workers. Fixed,
    /// not chosen from the thread count, so that results do not depend on it.
    static Index ngd_tile_order(Index M) { return M <= 256 ? std::max<Index>(M, 1) : 128; }

    /// The first half of the natural-gradient update, as tasks on g (the old q only, so it runs
    /// alongside pass 1): the tiles of w.ngd <- lower(C^{-T} C^{-1}) = lower(S^{-1}).
    void add_old_precision_tasks(Workspace& w, runtime::TaskGraph& g) const
    {
        const Index M = M_, nb = ngd_tile_order(M);
        if (w.ngd.rows() != M || w.ngd.nb() != nb)
            w.ngd = tiles::TiledMatrix<double>(M, M, nb, tiles::Structure::SymmetricLower);
        tiles::copy_from_col_major(w.C.data(), M, w.ngd);
        linalg::spd_inverse_from_factor(w.ngd, g);
    }

    static void grow(std::vector<double>& v, std::size_t n)
    {
        if (v.size() < n) v.resize(n);
    }

    /// The natural-gradient update of (mv, C) (header), with P = A A^T and a = A y summed over
    /// the minibatch:
    ///   Lambda = (1 - gamma) C^{-T} C^{-1} + gamma (I + s P / sigma2),  eta = (1 - gamma) Lambda_old mv + gamma s a / sigma2
    ///   J Lambda J = L' L'^T (J the order reversal), so Lambda = U U^T with U = J L' J upper and
    ///   S = Lambda^{-1} = U^{-T} U^{-1}: C = U^{-T} = J L'^{-T} J is S's lower Cholesky factor
    ///   (positive diagonal, hence the unique one), mv = Lambda^{-1} eta = J L'^{-T} L'^{-1} J eta.
    /// One potrf and one trtri of order M, where factoring Lambda and then S took two of each.
    /// Expects add_old_precision_tasks' result in w.ngd (its graph waited for).
    void natural_update(Workspace& w, const double* P, const double* a, Index b, double scale, double s2,
                        double gamma) const
    {
        using detail::view;
        const Index M = M_;
        const std::size_t MM = static_cast<std::size_t>(M * M);
        std::vector<double>& Lam = w.Lam;
        std::vector<double>& eta = w.eta;
        grow(Lam, MM);
        grow(eta, static_cast<std::size_t>(M));
        // Lambda_old = C^{-T} C^{-1} (from the tiles);  eta = (1 - gamma) Lambda_old m
        tiles::copy_to_col_major(w.ngd, Lam.data(), M);
        detail::symmetrize(Lam, M, true);
        linalg::tile::gemm(Op::NoTrans, Op::NoTrans, 1.0 - gamma, view(Lam, M, M), view(w.mv, M, 1), 0.0, view(eta, M, 1));
        // Lambda <- (1 - gamma) Lambda + gamma (I + s P / sigma2);  eta += gamma s a / sigma2
        const double c = b > 0 ? gamma * scale / s2 : 0.0;
        for (Index j = 0; j < M; ++j) {
            for (Index i = j; i < M; ++i) {
                const std::size_t q = static_cast<std::size_t>(i + j * M);
                Lam[q] = (1.0 - gamma) * Lam[q] + (b > 0 ? c * P[q] : 0.0);
            }
            Lam[static_cast<std::size_t>(j + j * M)] += gamma;
            if (b > 0) eta[static_cast<std::size_t>(j)] += c * a[j];
        }
        // R = J Lambda J (lower triangle), R = L' L'^T, then C = J L'^{-T} J
        std::vector<double>& R = w.Q;
        grow(R, MM);
        for (Index j = 0; j < M; ++j)
            for (Index i = j; i < M; ++i)
                R[static_cast<std::size_t>(i + j * M)] = Lam[static_cast<std::size_t>((M - 1 - j) + (M - 1 - i) * M)];
        {
            runtime::TaskGraph g;  // R = L' L'^T on tiles (NotPositiveDefinite rethrown by wait)
            tiles::copy_from_col_major(R.data(), M, w.ngd);
            linalg::cholesky(w.ngd, g);
            g.wait();
        }
        tiles::copy_to_col_major(w.ngd, R.data(), M);
        detail::zero_upper(R, M);
        // mv = J L'^{-T} L'^{-1} J eta
        for (Index i = 0; i < M; ++i) w.mv[static_cast<std::size_t>(i)] = eta[static_cast<std::size_t>(M - 1 - i)];
        linalg::tile::trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, view(R, M, M), view(w.mv, M, 1));
        linalg::tile::trsm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, view(R, M, M), view(w.mv, M, 1));
        std::reverse(w.mv.begin(), w.mv.begin() + M);
        {
            runtime::TaskGraph g;  // R <- L'^{-1} on the tiles that still hold L'
            linalg::invert_lower(w.ngd, g);
            g.wait();
        }
        tiles::copy_to_col_major(w.ngd, R.data(), M);
        // C(i, j) = L'^{-1}(M-1-j, M-1-i), lower
        for (Index j = 0; j < M; ++j)
            for (Index i = 0; i < M; ++i)
                w.C[static_cast<std::size_t>(i + j * M)] =
                    i >= j ? R[static_cast<std::size_t>((M - 1 - j) + (M - 1 - i) * M)] : 0.0;
    }

    /// The ELBO estimate (and gradient) of a minibatch; with gamma > 0 a natural-gradient step
    /// for q first (m_out, C_out receive the new q), and with `evaluate` false only that step.
    /// Passes (each a task graph over column chunks of the minibatch, or over blocks of M):
    ///   1. per chunk: K_ZB (assembly), A = L^{-1} K_ZB (trsm), P += A A^T (syrk), a += A y;
    ///      with K_ZZ's factorization L in parallel with the assembly
    ///   2. NGD (M^3: the old q's S^{-1} ran alongside pass 1; the new Lambda's factor and inverse as
    ///      tile graphs), KL
    ///   3. per chunk: C^T A (trmm), mu, var, the likelihood terms and r; Abar = 2 w (C C^T A - A)
    ///      + m r^T (trmm), A r (gemv), Kbar_ZB = L^{-T} Abar (trsm) and its kernel-gradient
    ///      reduction; and one task C^T P (trmm), S P = C (C^T P) (trmm)
    ///   4. Kbar_ZZ = -L^{-T} sym(Phi(Y)) L^{-1}, Y = Abar A^T = 2 w (S P - P) + m (A r)^T: the
    ///      potrf reverse, since dA = -Phi(L^{-1} dK_ZZ L^{-T}) A (Murray 2016, eq. 10 with
    ///      Lbar = -tril(L^{-T} Abar A^T)); two trsm over blocks, then the kernel-gradient
    ///      reduction over row blocks of K_ZZ.
    /// Without the gradient and the NGD step no M x b matrix is kept (pass 1 and 3 fused per chunk).
    template <typename K>
    double elbo_with(const K& k, double s2, const SVGPParams& p, const T* Xb, const T* yb, Index b, double scale,
                     bool include_kl, const SVGPGradient& grad, double gamma = 0.0, double* m_out = nullptr,
                     double* C_out = nullptr, bool evaluate = true) const
    {
        using detail::view;
        Workspace& w = *work_;
        std::lock_guard<std::mutex> lock(w.mutex);
        const Index M = M_, d = d_;
        const std::size_t MM = static_cast<std::size_t>(M * M);
        // leading dimension of the M x b buffers: padded, since columns a power of two apart
        // (M = 512: 4 KiB) map to the same cache sets and the kernel-gradient passes read rows
        const Index ld = M + leading_pad;
        const double* Z = p.Z.data();
        const Index nc = (b + chunk_cols - 1) / chunk_cols;
        const Index slots = std::min(nc, max_slots);
        const auto cols_of = [b](Index c) { return std::min(chunk_cols, b - c * chunk_cols); };
        const bool want = evaluate && (grad.theta || grad.Z || grad.m || grad.C);
        const bool ngd = gamma > 0;
        const bool keep = want || ngd;  // A (M x b) kept from pass 1 to pass 3
        grow(w.L, MM);
        grow(w.C, MM);
        grow(w.mv, static_cast<std::size_t>(M));
        std::copy(p.C.begin(), p.C.end(), w.C.begin());
        detail::zero_upper(w.C, M);
        std::copy(p.m.begin(), p.m.end(), w.mv.begin());
        grow(w.xs, static_cast<std::size_t>(b * d));
        grow(w.ys, static_cast<std::size_t>(b));
        for (Index i = 0; i < b * d; ++i) w.xs[static_cast<std::size_t>(i)] = static_cast<double>(Xb[i]);
        for (Index i = 0; i < b; ++i) w.ys[static_cast<std::size_t>(i)] = static_cast<double>(yb[i]);
        double* xs = w.xs.data();
        double* ys = w.ys.data();
        // per-column results of pass 3: r (M x 0 .. b), and per chunk [ell, dlog s2]
        grow(w.cols, static_cast<std::size_t>(b + 2 * nc));
        double* r = w.cols.data();
        double* sums = r + b;
        const std::size_t slot_stride = MM + static_cast<std::size_t>(M);  // [P (lower) | a or A r]
        if (keep) {
            grow(w.A, static_cast<std::size_t>(ld * b));
            grow(w.B, static_cast<std::size_t>(ld * b));
            grow(w.slots, static_cast<std::size_t>(slots) * slot_stride);
            std::fill(w.slots.begin(), w.slots.begin() + static_cast<std::ptrdiff_t>(slots * slot_stride), 0.0);
        }
        const std::size_t np = static_cast<std::size_t>(k.n_params());
        const std::size_t gstride = np + static_cast<std::size_t>(M * d);
        if (want) {
            grow(w.gt, static_cast<std::size_t>(nc) * gstride);
            std::fill(w.gt.begin(), w.gt.begin() + static_cast<std::ptrdiff_t>(nc * gstride), 0.0);
        }
        const double half_log = 0.5 * std::log(2.0 * std::numbers::pi * s2);
        const double wv = -scale / (2.0 * s2);
        // Pass 3 on one chunk: C^T A -> mu, var, ell, r; the gradient part when wanted.
        const auto likelihood = [&](Index c, double* Ac, double* Bc) {
            const Index c0 = c * chunk_cols, nb = cols_of(c);
            std::copy(Ac, Ac + ld * nb, Bc);
            // B = C^T A
            linalg::tile::trmm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, DenseView(w.C.data(), M, M, M),
                               DenseView(Bc, M, nb, ld));
            double ell = 0.0, dlog = 0.0;
            for (Index i = 0; i < nb; ++i) {
                const double* a = Ac + i * ld;
                const double* ca = Bc + i * ld;
                double mu = 0.0, aa = 0.0, cc = 0.0;
#pragma omp simd reduction(+ : mu, aa, cc)
                for (Index j = 0; j < M; ++j) {
                    mu += a[j] * w.mv[static_cast<std::size_t>(j)];
                    aa += a[j] * a[j];
                    cc += ca[j] * ca[j];
                }
                const double var = k.diagonal(xs + (c0 + i) * d, d) - aa + cc;
                const double res = ys[c0 + i] - mu;
                ell += -half_log - (res * res + var) / (2.0 * s2);
                dlog += -0.5 + (res * res + var) / (2.0 * s2);
                r[c0 + i] = scale * res / s2;
            }
            sums[2 * c] = ell;
            sums[2 * c + 1] = dlog;
        };
        {
            runtime::TaskGraph g;
            g.add("svgp_factor", 1, [&](double*) {
                kernels::fill_covariance_tile(view(w.L, M, M), Z, 0, Z, 0, d, k, true, jitter_);
                linalg::tile::potrf(view(w.L, M, M), 0);
                detail::zero_upper(w.L, M);
            }, runtime::Write<double*>{w.L.data(), MM * sizeof(double)});
            if (keep) {
                for (Index c = 0; c < nc; ++c) {
                    double* Ac = w.A.data() + c * chunk_cols * ld;
                    const Index nb = cols_of(c);
                    g.add("svgp_kzb", 0, [&, c, Ac, nb](double*) {
                        kernels::fill_cross_covariance_tile(DenseView(Ac, M, nb, ld), Z, 0, xs, c * chunk_cols, d, k);
                    }, runtime::Write<double*>{Ac, static_cast<std::size_t>(ld * nb) * sizeof(double)});
                }
            }
            g.wait();
        }
        const DenseView Lv(w.L.data(), M, M, M);
        if (!keep) {
            // ELBO only: each chunk assembles, solves and reduces in its own buffers
            runtime::TaskGraph g;
            for (Index c = 0; c < nc; ++c)
                g.add("svgp_elbo", 0, [&, c] {
                    const Index nb = cols_of(c);
                    std::vector<double> Ac(static_cast<std::size_t>(ld * nb)), Bc(static_cast<std::size_t>(ld * nb));
                    kernels::fill_cross_covariance_tile(DenseView(Ac.data(), M, nb, ld), Z, 0, xs, c * chunk_cols, d, k);
                    linalg::tile::trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, Lv,
                                       DenseView(Ac.data(), M, nb, ld));
                    likelihood(c, Ac.data(), Bc.data());
                });
            g.wait();
        } else {
            // pass 1: A = L^{-1} K_ZB;  P += A A^T;  a += A y; and the old q's S^{-1} for NGD
            runtime::TaskGraph g;
            if (ngd) add_old_precision_tasks(w, g);
            for (Index c = 0; c < nc; ++c) {
                double* slot = w.slots.data() + static_cast<std::size_t>(c % slots) * slot_stride;
                g.add("svgp_solve", 0, [&, c](double* s) {
                    const Index nb = cols_of(c);
                    const DenseView Ac(w.A.data() + c * chunk_cols * ld, M, nb, ld);
                    linalg::tile::trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, Lv, Ac);
                    linalg::tile::syrk(Op::NoTrans, 1.0, Ac, 1.0, DenseView(s, M, M, M));
                    linalg::tile::gemm(Op::NoTrans, Op::NoTrans, 1.0, Ac,
                                       DenseView(ys + c * chunk_cols, nb, 1, std::max<Index>(nb, 1)),
                                       1.0, DenseView(s + MM, M, 1, M));
                }, runtime::Write<double*>{slot, slot_stride * sizeof(double)});
            }
            g.wait();
        }
        // P (lower, then symmetric) and a = A y, summed over the slots in order
        grow(w.P, MM + static_cast<std::size_t>(M));
        double* P = w.P.data();
        double* ay = P + MM;
        if (keep) {
            std::fill(w.P.begin(), w.P.begin() + static_cast<std::ptrdiff_t>(MM + M), 0.0);
            for (Index s = 0; s < slots; ++s) {
                const double* a = w.slots.data() + static_cast<std::size_t>(s) * slot_stride;
                for (Index j = 0; j < M; ++j)
                    for (Index i = j; i < M; ++i) P[i + j * M] += a[i + j * M];
                for (Index j = 0; j < M; ++j) ay[j] += a[MM + static_cast<std::size_t>(j)];
            }
            for (Index j = 0; j < M; ++j)
                for (Index i = j + 1; i < M; ++i) P[j + i * M] = P[i + j * M];
        }
        if (ngd) {
            natural_update(w, P, ay, b, scale, s2, gamma);
            std::copy(w.mv.begin(), w.mv.begin() + M, m_out);
            std::copy(w.C.begin(), w.C.begin() + static_cast<std::ptrdiff_t>(MM), C_out);
            if (!evaluate) return 0.0;
        }
        const std::vector<double>& C = w.C;
        const std::vector<double>& mv = w.mv;
        double kl = 0.0;
        if (include_kl) {
            double cf = 0.0, mm = 0.0, logdiag = 0.0;
            for (Index j = 0; j < M; ++j) {
                for (Index i = j; i < M; ++i) cf += C[static_cast<std::size_t>(i + j * M)] * C[static_cast<std::size_t>(i + j * M)];
                mm += mv[static_cast<std::size_t>(j)] * mv[static_cast<std::size_t>(j)];
                logdiag += std::log(std::abs(C[static_cast<std::size_t>(j + j * M)]));
            }
            kl = 0.5 * (cf + mm - static_cast<double>(M) - 2.0 * logdiag);
        }
        if (keep) {
            // pass 3 (the slots are reused for A r)
            grow(w.Q, MM);
            if (want) std::fill(w.slots.begin(), w.slots.begin() + static_cast<std::ptrdiff_t>(slots * slot_stride), 0.0);
            runtime::TaskGraph g;
            if (want)
                g.add("svgp_sp", 1, [&] {
                    // Q = C^T P;  G = S P = C Q (Q is kept: P C = Q^T for dE/dC)
                    std::copy(P, P + MM, w.Q.begin());
                    linalg::tile::trmm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, view(w.C, M, M), view(w.Q, M, M));
                    grow(w.G, MM);
                    std::copy(w.Q.begin(), w.Q.begin() + static_cast<std::ptrdiff_t>(MM), w.G.begin());
                    linalg::tile::trmm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, view(w.C, M, M), view(w.G, M, M));
                });
            for (Index c = 0; c < nc; ++c) {
                double* slot = w.slots.data() + static_cast<std::size_t>(c % slots) * slot_stride + MM;
                g.add("svgp_likelihood", 0, [&, c](double* ar) {
                    const Index c0 = c * chunk_cols, nb = cols_of(c);
                    double* Ac = w.A.data() + c0 * ld;
                    double* Bc = w.B.data() + c0 * ld;
                    likelihood(c, Ac, Bc);
                    if (!want) return;
                    const DenseView Bv(Bc, M, nb, ld), Av(Ac, M, nb, ld);
                    const DenseView rv(r + c0, nb, 1, std::max<Index>(nb, 1));
                    // A r (for dE/dm and Y)
                    linalg::tile::gemm(Op::NoTrans, Op::NoTrans, 1.0, Av, rv, 1.0, DenseView(ar, M, 1, M));
                    // Abar = 2 w (C C^T A - A) + m r^T;  Kbar_ZB = L^{-T} Abar
                    linalg::tile::trmm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0,
                                       DenseView(const_cast<double*>(C.data()), M, M, M), Bv);
                    for (Index i = 0; i < nb; ++i) {
                        const double ri = r[c0 + i];
                        double* bc = Bc + i * ld;
                        const double* a = Ac + i * ld;
#pragma omp simd
                        for (Index j = 0; j < M; ++j) bc[j] = 2.0 * wv * (bc[j] - a[j]) + mv[static_cast<std::size_t>(j)] * ri;
                    }
                    linalg::tile::trsm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, Lv, Bv);
                    double* gt = w.gt.data() + static_cast<std::size_t>(c) * gstride;
                    detail::accumulate_kzb_gradient(Bv, Z, xs, c0, d, k, gt, gt + np);
                    kernels::accumulate_diagonal_gradient(xs, c0, nb, d, k, wv, gt);
                }, runtime::Write<double*>{slot, static_cast<std::size_t>(M) * sizeof(double)});
            }
            g.wait();
        }
        double ell = 0.0, dlog_s2 = 0.0;
        for (Index c = 0; c < nc; ++c) {
            ell += sums[2 * c];
            dlog_s2 += sums[2 * c + 1];
        }
        const double E = scale * ell - kl;
        if (!want) return E;

        std::vector<double> gt(np, 0.0), gz(static_cast<std::size_t>(M * d), 0.0);
        for (Index c = 0; c < nc; ++c) {
            const double* a = w.gt.data() + static_cast<std::size_t>(c) * gstride;
            for (std::size_t q = 0; q < np; ++q) gt[q] += a[q];
            for (std::size_t q = 0; q < gz.size(); ++q) gz[q] += a[np + q];
        }
        // A r, summed over the slots in order
        std::vector<double> Ar(static_cast<std::size_t>(M), 0.0);
        for (Index s = 0; s < slots; ++s) {
            const double* a = w.slots.data() + static_cast<std::size_t>(s) * slot_stride + MM;
            for (Index j = 0; j < M; ++j) Ar[static_cast<std::size_t>(j)] += a[j];
        }
        if (grad.m) {
            // dE/dm = A r - m (KL)
            for (Index j = 0; j < M; ++j)
                grad.m[j] = Ar[static_cast<std::size_t>(j)] - (include_kl ? mv[static_cast<std::size_t>(j)] : 0.0);
        }
        if (grad.C) {
            // dE/dC = tril(2 w A A^T C) - tril(C) + diag(1 / C_jj) (KL), A A^T C = P C = (C^T P)^T = Q^T
            for (Index j = 0; j < M; ++j)
                for (Index i = 0; i < M; ++i) {
                    const std::size_t q = static_cast<std::size_t>(i + j * M);
                    double v = 0.0;
                    if (i >= j) {
                        v = 2.0 * wv * w.Q[static_cast<std::size_t>(j + i * M)];
                        if (include_kl) v -= C[q] + (i == j ? -1.0 / C[q] : 0.0);
                    }
                    grad.C[q] = v;
                }
        }
        if (grad.theta || grad.Z) {
            // Y = 2 w (S P - P) + m (A r)^T (G holds S P); X = sym(Phi(Y)); G <- -L^{-T} X L^{-1}
            std::vector<double>& G = w.G;
            for (Index j = 0; j < M; ++j)
                for (Index i = j; i < M; ++i) {
                    const std::size_t q = static_cast<std::size_t>(i + j * M);
                    const double y = 2.0 * wv * (G[q] - P[q]) + mv[static_cast<std::size_t>(i)] * Ar[static_cast<std::size_t>(j)];
                    // Phi halves the diagonal, sym halves the strict triangles: every entry is -y / 2
                    G[q] = -0.5 * y;
                    G[static_cast<std::size_t>(j + i * M)] = G[q];
                }
            const Index hb = std::max<Index>(16, (M + square_blocks - 1) / square_blocks);
            const Index nblk = (M + hb - 1) / hb;
            const auto rows_of = [M, hb](Index q) { return std::min(hb, M - q * hb); };
            {
                // G <- L^{-T} G, column blocks
                runtime::TaskGraph g;
                for (Index q = 0; q < nblk; ++q)
                    g.add("svgp_sandwich_left", 0, [&, q] {
                        linalg::tile::trsm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, Lv,
                                           DenseView(G.data() + q * hb * M, M, rows_of(q), M));
                    });
                g.wait();
            }
            {
                // G <- G L^{-1}, row blocks
                runtime::TaskGraph g;
                for (Index q = 0; q < nblk; ++q)
                    g.add("svgp_sandwich_right", 0, [&, q] {
                        linalg::tile::trsm(Side::Right, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, Lv,
                                           DenseView(G.data() + q * hb, rows_of(q), M, M));
                    });
                g.wait();
            }
            detail::symmetrize(G, M, false);
            // padded copy for the row-wise reduction below (see ld)
            const Index ldg = M + leading_pad;
            grow(w.Gp, static_cast<std::size_t>(ldg * M));
            for (Index j = 0; j < M; ++j)
                std::copy(G.begin() + j * M, G.begin() + (j + 1) * M, w.Gp.begin() + j * ldg);
            // kernel gradient over K_ZZ, row blocks (their own theta sums, added in order)
            std::vector<double> gtb(static_cast<std::size_t>(nblk) * np, 0.0);
            {
                runtime::TaskGraph g;
                for (Index q = 0; q < nblk; ++q)
                    g.add("svgp_kzz_gradient", 0, [&, q] {
                        kernels::accumulate_inducing_gradient(DenseView(w.Gp.data() + q * hb, rows_of(q), M, ldg), Z, q * hb,
                                                              Z, 0, d, k, true, 1.0, 2.0, gtb.data() + q * np,
                                                              gz.data() + q * hb * d);
                    });
                g.wait();
            }
            for (Index q = 0; q < nblk; ++q)
                for (std::size_t t = 0; t < np; ++t) gt[t] += gtb[static_cast<std::size_t>(q) * np + t];
        }
        if (grad.theta) {
            for (std::size_t q = 0; q < np; ++q) grad.theta[q] = gt[q];
            grad.theta[np] = scale * dlog_s2;
        }
        if (grad.Z) std::copy(gz.begin(), gz.end(), grad.Z);
        return E;
    }

    template <typename K>
    void predict_with(const K& k, double s2, const SVGPParams& p, const T* Xs, Index ms, T* mean, T* variance,
                      T* covariance, bool include_noise) const
    {
        using detail::view;
        if (ms == 0) return;
        const Index M = M_, d = d_;
        std::vector<double> L = factor(k, p.Z.data());
        std::vector<double> C(p.C.begin(), p.C.end());
        detail::zero_upper(C, M);
        std::vector<double> xs, ys, A(static_cast<std::size_t>(M * ms));
        load(Xs, nullptr, ms, xs, ys);
        kernels::fill_cross_covariance_tile(view(A, M, ms), p.Z.data(), 0, xs.data(), 0, d, k);
        linalg::tile::trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, view(L, M, M), view(A, M, ms));
        std::vector<double> CtA = A;
        linalg::tile::trmm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, view(C, M, M), view(CtA, M, ms));
        const double add = include_noise ? s2 : 0.0;
        for (Index i = 0; i < ms; ++i) {
            double mu = 0.0, aa = 0.0, cc = 0.0;
            for (Index j = 0; j < M; ++j) {
                const double a = A[static_cast<std::size_t>(j + i * M)], c = CtA[static_cast<std::size_t>(j + i * M)];
                mu += a * p.m[static_cast<std::size_t>(j)];
                aa += a * a;
                cc += c * c;
            }
            mean[i] = static_cast<T>(mu);
            if (variance) variance[i] = static_cast<T>(std::max(k.diagonal(xs.data() + i * d, d) + add - aa + cc, 0.0));
        }
        if (covariance) {
            std::vector<double> Cv(static_cast<std::size_t>(ms * ms));
            kernels::fill_covariance_tile(view(Cv, ms, ms), xs.data(), 0, xs.data(), 0, d, k, true, add);
            linalg::tile::syrk(Op::Trans, -1.0, view(A, M, ms), 1.0, view(Cv, ms, ms));
            linalg::tile::syrk(Op::Trans, 1.0, view(CtA, M, ms), 1.0, view(Cv, ms, ms));
            for (Index j = 0; j < ms; ++j)
                for (Index i = j; i < ms; ++i) {
                    const T v = static_cast<T>(Cv[static_cast<std::size_t>(i + j * ms)]);
                    covariance[i * ms + j] = v;
                    covariance[j * ms + i] = v;
                }
        }
    }

    kernels::AnyKernel kernel_;
    Index d_, M_;
    double jitter_ = 0.0;
    std::unique_ptr<Workspace> work_ = std::make_unique<Workspace>();
};

}  // namespace gprat::gp
