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
///   trsm reverse (A = L^{-1} K_ZB):  Kbar_ZB = L^{-T} Abar,  Lbar = -tril(Kbar_ZB A^T)
///   potrf reverse (Murray 2016, arXiv 1602.07527, eq. 10): with Phi(X) = tril(X) with its
///     diagonal halved, Kbar_ZZ = L^{-T} sym(Phi(L^T Lbar)) L^{-1}, sym(X) = (X + X^T)/2
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
/// Cost per minibatch: O(b M^2 + M^3) (about 6 b M^2 + 5 M^3 flops with the gradient), memory
/// a few M x b and M x M matrices. Computation in double whatever the precision T of X and y.
/// Each call runs as one task of the runtime: its BLAS calls are then those of a worker
/// (single-threaded BLAS; runtime/executor.hpp). In the calling thread a multi-threaded BLAS
/// spent most of a step synchronizing its threads on these mid-sized calls: 670 ms against
/// 26 ms single-threaded for M = 64, b = 1024 on the shared 2-core machine.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <span>
#include <variant>
#include <vector>

#include "gprat/core/check.hpp"
#include "gprat/core/errors.hpp"
#include "gprat/gp/sgpr.hpp"
#include "gprat/kernels/any_kernel.hpp"
#include "gprat/kernels/assemble.hpp"
#include "gprat/linalg/tile_kernels.hpp"
#include "gprat/runtime/task_graph.hpp"

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
            std::visit([&](const auto& kern) { natural_with(kern, s2, p, Xb, yb, b, scale, gamma, m_out, C_out); },
                       ks.first);
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

    /// The natural-gradient update of (mv, C) from A = L^{-1} K_ZB and the targets (header):
    /// Lambda = (1 - gamma) C^{-T} C^{-1} + gamma (I + s A A^T / sigma2), eta likewise,
    /// mv = Lambda^{-1} eta, C = chol(Lambda^{-1}).
    void natural_update(const std::vector<double>& Av, const std::vector<double>& ys, Index b, double scale, double s2,
                        double gamma, std::vector<double>& mv, std::vector<double>& C) const
    {
        using detail::view;
        const Index M = M_;
        std::vector<double>& A = const_cast<std::vector<double>&>(Av);
        std::vector<double>& Y = const_cast<std::vector<double>&>(ys);
        // S^{-1} = C^{-T} C^{-1};  eta = S^{-1} m
        std::vector<double> Lam = C;
        detail::zero_upper(Lam, M);
        linalg::tile::trtri(view(Lam, M, M), 0);
        linalg::tile::lauum(view(Lam, M, M));
        detail::symmetrize(Lam, M, true);
        std::vector<double> eta(static_cast<std::size_t>(M), 0.0);
        linalg::tile::gemm(Op::NoTrans, Op::NoTrans, 1.0 - gamma, view(Lam, M, M), view(mv, M, 1), 0.0, view(eta, M, 1));
        // Lambda <- (1 - gamma) Lambda + gamma (I + s A A^T / sigma2);  eta += gamma s A y / sigma2
        for (double& v : Lam) v *= 1.0 - gamma;
        for (Index j = 0; j < M; ++j) Lam[static_cast<std::size_t>(j + j * M)] += gamma;
        if (b > 0) {
            const double c = gamma * scale / s2;
            linalg::tile::syrk(Op::NoTrans, c, view(A, M, b), 1.0, view(Lam, M, M));  // lower triangle
            linalg::tile::gemm(Op::NoTrans, Op::NoTrans, c, view(A, M, b), view(Y, b, 1), 1.0, view(eta, M, 1));
        }
        // Lambda = L_La L_La^T;  m = Lambda^{-1} eta;  S = L_La^{-T} L_La^{-1};  C = chol(S)
        linalg::tile::potrf(view(Lam, M, M), 0);
        detail::zero_upper(Lam, M);
        linalg::tile::trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, view(Lam, M, M), view(eta, M, 1));
        linalg::tile::trsm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, view(Lam, M, M), view(eta, M, 1));
        linalg::tile::trtri(view(Lam, M, M), 0);
        linalg::tile::lauum(view(Lam, M, M));
        detail::zero_upper(Lam, M);
        linalg::tile::potrf(view(Lam, M, M), 0);
        detail::zero_upper(Lam, M);
        mv = std::move(eta);
        C = std::move(Lam);
    }

    template <typename K>
    double elbo_with(const K& k, double s2, const SVGPParams& p, const T* Xb, const T* yb, Index b, double scale,
                     bool include_kl, const SVGPGradient& grad, double gamma = 0.0, double* m_out = nullptr,
                     double* C_out = nullptr) const
    {
        using detail::view;
        const Index M = M_, d = d_;
        const std::size_t MM = static_cast<std::size_t>(M * M), Mb = static_cast<std::size_t>(M * b);
        std::vector<double> L = factor(k, p.Z.data());
        std::vector<double> C(p.C.begin(), p.C.end());
        detail::zero_upper(C, M);
        std::vector<double> mv(p.m.begin(), p.m.end());
        std::vector<double> xs, ys, A, CtA, r;
        if (b > 0) {
            load(Xb, yb, b, xs, ys);
            // A = L^{-1} K_ZB
            A.resize(Mb);
            kernels::fill_cross_covariance_tile(view(A, M, b), p.Z.data(), 0, xs.data(), 0, d, k);
            linalg::tile::trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, view(L, M, M), view(A, M, b));
        }
        if (gamma > 0) {
            natural_update(A, ys, b, scale, s2, gamma, mv, C);
            std::copy(mv.begin(), mv.end(), m_out);
            std::copy(C.begin(), C.end(), C_out);
        }
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
        const bool want = grad.theta || grad.Z || grad.m || grad.C;
        double ell = 0.0, dlog_s2 = 0.0;
        if (b > 0) {
            // mu = A^T m;  C^T A
            CtA = A;
            linalg::tile::trmm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, view(C, M, M), view(CtA, M, b));
            r.resize(static_cast<std::size_t>(b));
            const double half_log = 0.5 * std::log(2.0 * std::numbers::pi * s2);
            for (Index i = 0; i < b; ++i) {
                double mu = 0.0, aa = 0.0, cc = 0.0;
                for (Index j = 0; j < M; ++j) {
                    const double a = A[static_cast<std::size_t>(j + i * M)], c = CtA[static_cast<std::size_t>(j + i * M)];
                    mu += a * mv[static_cast<std::size_t>(j)];
                    aa += a * a;
                    cc += c * c;
                }
                const double var = k.diagonal(xs.data() + i * d, d) - aa + cc;
                const double res = ys[static_cast<std::size_t>(i)] - mu;
                ell += -half_log - (res * res + var) / (2.0 * s2);
                dlog_s2 += -0.5 + (res * res + var) / (2.0 * s2);
                r[static_cast<std::size_t>(i)] = scale * res / s2;
            }
        }
        const double E = scale * ell - kl;
        if (!want) return E;

        const double w = -scale / (2.0 * s2);
        const Index np = k.n_params();
        std::vector<double> gt(static_cast<std::size_t>(np), 0.0), gz(static_cast<std::size_t>(M * d), 0.0);
        std::vector<double> gm(static_cast<std::size_t>(M), 0.0), gC(MM, 0.0);
        if (include_kl) {
            for (Index j = 0; j < M; ++j) {
                gm[static_cast<std::size_t>(j)] = -mv[static_cast<std::size_t>(j)];
                for (Index i = j; i < M; ++i) gC[static_cast<std::size_t>(i + j * M)] = -C[static_cast<std::size_t>(i + j * M)];
                gC[static_cast<std::size_t>(j + j * M)] += 1.0 / C[static_cast<std::size_t>(j + j * M)];
            }
        }
        if (b > 0) {
            // dE/dm += A r
            linalg::tile::gemm(Op::NoTrans, Op::NoTrans, 1.0, view(A, M, b), view(r, b, 1), 1.0, view(gm, M, 1));
            // dE/dC += tril(2 w A (C^T A)^T) = tril(2 w A A^T C)
            std::vector<double> AAC(MM, 0.0);
            linalg::tile::gemm(Op::NoTrans, Op::Trans, 2.0 * w, view(A, M, b), view(CtA, M, b), 0.0, view(AAC, M, M));
            for (Index j = 0; j < M; ++j)
                for (Index i = j; i < M; ++i) gC[static_cast<std::size_t>(i + j * M)] += AAC[static_cast<std::size_t>(i + j * M)];
            // Abar = 2 w (C C^T A - A) + m r^T, then Kbar_ZB = L^{-T} Abar (in place)
            std::vector<double>& Kbar = CtA;
            linalg::tile::trmm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, view(C, M, M), view(Kbar, M, b));
            for (std::size_t q = 0; q < Mb; ++q) Kbar[q] = 2.0 * w * (Kbar[q] - A[q]);
            linalg::tile::gemm(Op::NoTrans, Op::Trans, 1.0, view(mv, M, 1), view(r, b, 1), 1.0, view(Kbar, M, b));
            linalg::tile::trsm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, view(L, M, M), view(Kbar, M, b));
            // Lbar = -tril(Kbar A^T);  G = sym(Phi(L^T Lbar));  Kbar_ZZ = L^{-T} G L^{-1}
            std::vector<double> G(MM, 0.0);
            linalg::tile::gemm(Op::NoTrans, Op::Trans, -1.0, view(Kbar, M, b), view(A, M, b), 0.0, view(G, M, M));
            detail::zero_upper(G, M);
            linalg::tile::trmm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, view(L, M, M), view(G, M, M));
            for (Index j = 0; j < M; ++j) {
                for (Index i = 0; i < j; ++i) G[static_cast<std::size_t>(i + j * M)] = 0.0;
                G[static_cast<std::size_t>(j + j * M)] *= 0.5;
            }
            for (Index j = 0; j < M; ++j)
                for (Index i = j + 1; i < M; ++i) {
                    const double v = 0.5 * G[static_cast<std::size_t>(i + j * M)];
                    G[static_cast<std::size_t>(i + j * M)] = v;
                    G[static_cast<std::size_t>(j + i * M)] = v;
                }
            detail::sandwich_inverse(L, G, M);
            kernels::accumulate_inducing_gradient(view(Kbar, M, b), p.Z.data(), 0, xs.data(), 0, d, k, false, 1.0, 1.0,
                                                  gt.data(), gz.data());
            kernels::accumulate_diagonal_gradient(xs.data(), 0, b, d, k, w, gt.data());
            kernels::accumulate_inducing_gradient(view(G, M, M), p.Z.data(), 0, p.Z.data(), 0, d, k, true, 1.0, 2.0,
                                                  gt.data(), gz.data());
        }
        if (grad.theta) {
            for (Index q = 0; q < np; ++q) grad.theta[q] = gt[static_cast<std::size_t>(q)];
            grad.theta[np] = scale * dlog_s2;
        }
        if (grad.Z) std::copy(gz.begin(), gz.end(), grad.Z);
        if (grad.m) std::copy(gm.begin(), gm.end(), grad.m);
        if (grad.C) std::copy(gC.begin(), gC.end(), grad.C);
        return E;
    }

    template <typename K>
    void natural_with(const K& k, double s2, const SVGPParams& p, const T* Xb, const T* yb, Index b, double scale,
                      double gamma, double* m_out, double* C_out) const
    {
        using detail::view;
        const Index M = M_, d = d_;
        std::vector<double> L = factor(k, p.Z.data());
        std::vector<double> C(p.C.begin(), p.C.end()), mv(p.m.begin(), p.m.end());
        std::vector<double> xs, ys, A(static_cast<std::size_t>(M * b));
        if (b > 0) {
            load(Xb, yb, b, xs, ys);
            kernels::fill_cross_covariance_tile(view(A, M, b), p.Z.data(), 0, xs.data(), 0, d, k);
            linalg::tile::trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, view(L, M, M), view(A, M, b));
        }
        natural_update(A, ys, b, scale, s2, gamma, mv, C);
        std::copy(mv.begin(), mv.end(), m_out);
        std::copy(C.begin(), C.end(), C_out);
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
};

}  // namespace gprat::gp
