#pragma once
/// Exact GP regression on the tiled Cholesky factorization (R&W Algorithm 2.1), with the
/// closed-form gradient of the log marginal likelihood, for p outputs Y = [y_1 .. y_p] that share
/// one kernel and one factor:
///   K = k(X, X) + diag(s) + sigma2 I + jitter I,  L = chol(K),  A = L^T \ (L \ (Y - 1 c^T))
///   log p(Y|X) = sum_j [-1/2 (y_j - c_j)^T a_j] - p sum_i log L_ii - p n/2 log(2 pi)
///   d log p / d theta_q = 1/2 tr((A A^T - p K^{-1}) dK/dtheta_q)   (kernel and sigma2 entries)
///   d log p / d c_j = 1^T a_j                                      (constant mean entries)
///   mean = K* A + 1 c^T,  V = L \ K*^T,  var = k(x*, x*) - colsum(V o V),  cov = K** - V^T V
/// s is a fixed per-sample noise (known, not learned; absent = 0), sigma2 a learned noise
/// variance (absent = 0), c one constant mean per output (absent = 0), jitter a value the caller
/// sets to keep the factorization honest (not part of theta).
/// theta = [log lengthscale(s)..., log signal_variance, (log sigma2), (c_1 .. c_p)]: the noise
/// entry exists only with a learned sigma2 (a zero or fixed noise has no log to take) and the
/// mean entries only with a constant mean; they are not in log space (a mean may be negative).
/// The default (one output, learned sigma2, no fixed noise, zero mean) is
/// theta = log [lengthscale(s)..., signal_variance, noise_variance].
///
/// Memory: the lower tiles of one n x n matrix (K, then L, then K^{-1} in place during a
/// training step) plus O(n nb) vectors; prediction adds n x m_chunk for K*^T. The static
/// fit_bytes, training_step_bytes and predict_bytes give the numbers.
///
/// Thread safety: any number of threads may predict concurrently; fit, training steps and
/// hyperparameter changes take the model exclusively.
#include <algorithm>
#include <cmath>
#include <mutex>
#include <numbers>
#include <optional>
#include <shared_mutex>
#include <span>
#include <variant>
#include <vector>

#include "gprat/core/check.hpp"
#include "gprat/gp/assemble_tasks.hpp"
#include "gprat/gp/tile_size.hpp"
#include "gprat/kernels/any_kernel.hpp"
#include "gprat/kernels/assemble.hpp"
#include "gprat/linalg/cholesky.hpp"
#include "gprat/linalg/inverse.hpp"
#include "gprat/linalg/tile_access.hpp"
#include "gprat/linalg/tiled_products.hpp"
#include "gprat/linalg/triangular_solve.hpp"
#include "gprat/runtime/executor.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "gprat/tiles/tiled_matrix.hpp"

namespace gprat::gp {

/// What the engine models beyond the kernel: the noise (a fixed per-sample part and a learned
/// scalar, either or both absent), the number of outputs and an optional constant mean.
struct ExactGPOptions
{
    std::vector<double> fixed_noise;      ///< s: n known noise variances (>= 0), or empty for none
    std::optional<double> learned_noise;  ///< sigma2 (> 0; theta holds log sigma2), or none
    Index outputs = 1;                    ///< p: columns of Y
    bool constant_mean = false;           ///< learn c (one constant per output; theta entries)
    std::vector<double> mean;             ///< initial c (p entries; empty: zeros)
};

template <typename T>
class ExactGP
{
  public:
    using Matrix = tiles::TiledMatrix<T>;

    /// The default model: one output, a learned noise variance, zero mean.
    /// @param X  row-major (n, d) training inputs; @param y  (n) targets. Both are borrowed:
    ///           they must stay alive and unchanged for the life of the model.
    /// @param tile_size  nb, or nullopt for choose_tile_size; clamped to n.
    ExactGP(kernels::AnyKernel kernel, double noise_variance, const T* X, const T* y, Index n, Index d,
            std::optional<Index> tile_size)
        : ExactGP(std::move(kernel), default_options(noise_variance), X, y, n, d, tile_size)
    {}

    /// @param Y  row-major (n, options.outputs) targets, borrowed like X.
    ExactGP(kernels::AnyKernel kernel, ExactGPOptions options, const T* X, const T* Y, Index n, Index d,
            std::optional<Index> tile_size)
        : kernel_(std::move(kernel)), learned_noise_(options.learned_noise), fixed_noise_(std::move(options.fixed_noise)),
          mean_(std::move(options.mean)), X_(X), y_(Y), n_(n), d_(d), p_(options.outputs),
          constant_mean_(options.constant_mean)
    {
        GPRAT_EXPECTS(n >= 1 && d >= 1, "X must have at least one row and one column; got shape (" << n << ", " << d << ")");
        GPRAT_EXPECTS(p_ >= 1, "Y must have at least one column (output); got " << p_);
        if (learned_noise_)
            GPRAT_EXPECTS(std::isfinite(*learned_noise_) && *learned_noise_ > 0,
                          "noise_variance must be positive and finite; got " << *learned_noise_);
        GPRAT_EXPECTS(fixed_noise_.empty() || static_cast<Index>(fixed_noise_.size()) == n,
                      "the per-sample noise must have one entry per row of X (" << n << "); got " << fixed_noise_.size());
        for (std::size_t i = 0; i < fixed_noise_.size(); ++i)
            GPRAT_EXPECTS(std::isfinite(fixed_noise_[i]) && fixed_noise_[i] >= 0,
                          "the per-sample noise must be finite and >= 0; entry " << i << " is " << fixed_noise_[i]);
        if (mean_.empty()) mean_.assign(static_cast<std::size_t>(p_), 0.0);
        GPRAT_EXPECTS(static_cast<Index>(mean_.size()) == p_,
                      "the constant mean must have one entry per output (" << p_ << "); got " << mean_.size());
        for (double c : mean_) GPRAT_EXPECTS(std::isfinite(c), "the constant mean must be finite; got " << c);
        GPRAT_EXPECTS(constant_mean_ || std::all_of(mean_.begin(), mean_.end(), [](double c) { return c == 0.0; }),
                      "a nonzero mean needs constant_mean");
        GPRAT_EXPECTS(!tile_size || *tile_size > 0, "tile_size must be a positive integer; got " << *tile_size);
        kernels::check_features(kernel_, d);
        nb_ = tile_size ? std::min(*tile_size, n) : choose_tile_size(n, runtime::Executor::instance().num_threads());
    }

    Index n() const noexcept { return n_; }
    Index d() const noexcept { return d_; }
    Index tile_size() const noexcept { return nb_; }
    /// p: the number of outputs (columns of Y).
    Index outputs() const noexcept { return p_; }
    bool has_learned_noise() const noexcept { return learned_noise_.has_value(); }
    bool has_fixed_noise() const noexcept { return !fixed_noise_.empty(); }
    bool has_constant_mean() const noexcept { return constant_mean_; }
    /// Entries of theta: the kernel's, then 1 for a learned noise, then p for a constant mean.
    Index n_params() const { return kernels::kernel_params(kernel_) + noise_entries() + mean_entries(); }

    kernels::AnyKernel kernel() const
    {
        std::shared_lock lock(mutex_);
        return kernel_;
    }
    /// The learned noise variance sigma2 (0 when the model has none).
    double noise_variance() const
    {
        std::shared_lock lock(mutex_);
        return learned_noise_.value_or(0.0);
    }

    /// The constant mean c (p entries; zeros without constant_mean).
    std::vector<double> mean() const
    {
        std::shared_lock lock(mutex_);
        return mean_;
    }

    /// Jitter added to the diagonal of K (not part of theta); the factor is recomputed lazily.
    double jitter() const
    {
        std::shared_lock lock(mutex_);
        return jitter_;
    }
    void set_jitter(double jitter)
    {
        GPRAT_EXPECTS(std::isfinite(jitter) && jitter >= 0, "jitter must be finite and >= 0; got " << jitter);
        std::unique_lock lock(mutex_);
        jitter_ = jitter;
    }

    std::vector<double> theta() const
    {
        std::shared_lock lock(mutex_);
        return theta_locked();
    }

    /// Set the hyperparameters; the factor is recomputed lazily on the next use.
    void set_theta(std::span<const double> theta)
    {
        check_theta(theta);
        const Index kp = kernels::kernel_params(kernel_);
        kernels::AnyKernel k = kernels::kernel_with_theta(kernel_, theta.first(static_cast<std::size_t>(kp)));
        std::unique_lock lock(mutex_);
        kernel_ = std::move(k);
        if (learned_noise_) learned_noise_ = std::exp(theta[static_cast<std::size_t>(kp)]);
        if (constant_mean_)
            mean_.assign(theta.end() - static_cast<std::ptrdiff_t>(p_), theta.end());
    }

    /// Assemble K, factor it and solve for alpha at the current hyperparameters.
    /// @return the log marginal likelihood.  @throws NotPositiveDefinite
    double fit()
    {
        std::unique_lock lock(mutex_);
        return factorize_locked(theta_locked(), nullptr);
    }

    /// log p(y | X, theta) at the current hyperparameters (factorizes if needed).
    double log_marginal_likelihood()
    {
        std::unique_lock lock(mutex_);
        if (factor_valid_locked()) { return lml_; }
        return factorize_locked(theta_locked(), nullptr);
    }

    /// One training step: log p(y | X, theta) and, when gradient is not null, its gradient with
    /// respect to theta (n_params() entries). The model's own hyperparameters do not change;
    /// the factor memory may be reused for K^{-1}, in which case the next predict refactors.
    double training_step(std::span<const double> theta, double* gradient)
    {
        check_theta(theta);
        std::unique_lock lock(mutex_);
        return factorize_locked(std::vector<double>(theta.begin(), theta.end()), gradient);
    }

    /// Posterior at m test points Xs (row-major (m, d)). Any output pointer may be null.
    /// @param[out] mean (m, p) row-major; variance (m), clamped at 0 against rounding, and
    ///             covariance (m, m) row-major, shared by all outputs.
    /// @param include_noise adds the learned noise variance sigma2 (not the fixed per-sample
    ///             noise, unknown at new points, nor the jitter) to variance and the covariance diagonal.
    void predict(const T* Xs, Index m, T* mean, T* variance, T* covariance, bool include_noise)
    {
        GPRAT_EXPECTS(m >= 1, "Xs must have at least one row; got 0");
        std::shared_lock lock(mutex_);
        while (!factor_valid_locked()) {
            lock.unlock();
            {
                std::unique_lock exclusive(mutex_);
                if (!factor_valid_locked()) { factorize_locked(theta_locked(), nullptr); }
            }
            lock.lock();
        }
        predict_locked(Xs, m, mean, variance, covariance, include_noise);
    }

    /// The lower Cholesky factor L as a dense row-major (n, n) array (upper part zero).
    void cholesky_factor(T* out)
    {
        std::unique_lock lock(mutex_);
        if (!factor_valid_locked()) { factorize_locked(theta_locked(), nullptr); }
        tiles::copy_to_row_major(K_, out, n_);
    }

    // Memory estimates. The engine owns them: each is computed from the same helpers the
    // algorithms below use to size what they allocate, so they cannot drift apart. nb is the
    // model's tile size (tile_size(); larger values are clamped to n as the constructor does).

    /// Bytes the model holds once fitted (K and alpha tiles): what fit will allocate.
    /// @param outputs p, the columns of alpha.
    static std::size_t fit_bytes(Index n, Index nb, Index outputs = 1)
    {
        check_sizes(n, 1, nb);
        GPRAT_EXPECTS(outputs >= 1, "outputs must be positive; got " << outputs);
        nb = std::min(nb, n);
        return Matrix::bytes_needed(n, n, nb, tiles::Structure::SymmetricLower) +
               Matrix::bytes_needed(n, outputs, nb, alpha_column_tile(nb, outputs), tiles::Structure::General);
    }

    /// Bytes a training step with the gradient allocates beyond fit_bytes: the per-tile partial
    /// sums of the fused gradient, one row of n_params doubles per lower tile of K
    /// (K^{-1} is formed in place). The O(nt) log-diagonal and the task graph are not counted.
    /// @param n_params the engine's n_params() (kernel hyperparameters + noise).
    static std::size_t training_step_bytes(Index n, Index nb, Index n_params)
    {
        check_sizes(n, 1, nb);
        GPRAT_EXPECTS(n_params >= 1, "n_params must be positive; got " << n_params);
        return gradient_partial_count(tile_count(n, std::min(nb, n)), n_params) * sizeof(double);
    }

    /// Layout of a prediction at m test points: test points are tiled by nbc columns and go
    /// through the algorithm in passes of `chunk` points.
    struct PredictPlan
    {
        Index nbc;    ///< columns per tile of K*^T (rows per tile of the outputs)
        Index chunk;  ///< test points per pass (m with a covariance: K** needs them all)
    };

    /// K*^T bytes one pass may hold when no covariance is asked for.
    static constexpr std::size_t predict_chunk_budget = std::size_t(256) << 20;

    /// The rule predict follows. nbc = ceil(m / (4 workers)): enough column tiles that every
    /// worker has its own stream of triangular solves (the solve is sequential down the rows of
    /// one column tile), at least min(64, m) and at most nb (nb wins if smaller). Without a
    /// covariance the chunk is the largest multiple of nbc whose K*^T (n x chunk) fits
    /// predict_chunk_budget (at least nbc), at most m.
    static PredictPlan predict_plan(Index n, Index m, Index nb, bool return_cov, Index workers)
    {
        check_sizes(n, m, nb);
        GPRAT_EXPECTS(workers >= 1, "workers must be positive; got " << workers);
        nb = std::min(nb, n);
        const Index per_worker = (m + 4 * workers - 1) / (4 * workers);
        const Index least = std::min<Index>(64, m);
        const Index nbc = std::min(std::max(per_worker, least), nb);  // nb wins when nb < least
        const Index budget_columns =
            std::max<Index>(nbc, static_cast<Index>(predict_chunk_budget / (sizeof(T) * static_cast<std::size_t>(n))));
        const Index chunk = return_cov ? m : std::min(m, (budget_columns / nbc) * nbc);
        return {nbc, chunk};
    }

    /// Tile bytes predict allocates beyond fit_bytes (what TileMemory sees at its peak): for the
    /// first (largest) pass, K*^T (n x chunk), the mean tiles, the variance tiles when
    /// return_var, and the lower tiles of K** when return_cov.
    static std::size_t predict_workspace_bytes(Index n, Index m, Index nb, bool return_var, bool return_cov,
                                               Index workers, Index outputs = 1)
    {
        const PredictPlan plan = predict_plan(n, m, nb, return_cov, workers);
        GPRAT_EXPECTS(outputs >= 1, "outputs must be positive; got " << outputs);
        const Index mc = std::min(plan.chunk, m);
        std::size_t bytes = Matrix::bytes_needed(n, mc, std::min(nb, n), plan.nbc, tiles::Structure::General) +
                            Matrix::bytes_needed(mc, outputs, plan.nbc, alpha_column_tile(std::min(nb, n), outputs),
                                                 tiles::Structure::General);
        if (return_var) bytes += Matrix::bytes_needed(mc, 1, plan.nbc, tiles::Structure::General);
        if (return_cov) bytes += Matrix::bytes_needed(mc, mc, plan.nbc, tiles::Structure::SymmetricLower);
        return bytes;
    }

    /// Bytes a prediction needs beyond fit_bytes: predict_workspace_bytes plus the outputs the
    /// caller receives (mean (m, p), variance (m) when return_var, covariance (m, m) when return_cov).
    static std::size_t predict_bytes(Index n, Index m, Index nb, bool return_var, bool return_cov, Index workers,
                                     Index outputs = 1)
    {
        const std::size_t returned = static_cast<std::size_t>(m) * (static_cast<std::size_t>(outputs) + (return_var ? 1 : 0)) +
                                     (return_cov ? static_cast<std::size_t>(m) * static_cast<std::size_t>(m) : 0);
        return predict_workspace_bytes(n, m, nb, return_var, return_cov, workers, outputs) + returned * sizeof(T);
    }

  private:
    static ExactGPOptions default_options(double noise_variance)
    {
        ExactGPOptions o;
        o.learned_noise = noise_variance;
        return o;
    }

    /// Columns per tile of alpha (n x p): all p in one column tile, at least nb wide so that one
    /// output keeps the n x 1 layout with nb x nb tiling of before.
    static Index alpha_column_tile(Index nb, Index outputs) { return std::max(nb, outputs); }

    Index noise_entries() const noexcept { return learned_noise_ ? 1 : 0; }
    Index mean_entries() const noexcept { return constant_mean_ ? p_ : 0; }

    static void check_sizes(Index n, Index m, Index nb)
    {
        GPRAT_EXPECTS(n >= 1 && m >= 1, "n and m must be positive; got n=" << n << ", m=" << m);
        GPRAT_EXPECTS(nb >= 1, "tile_size must be a positive integer; got " << nb);
    }

    static Index tile_count(Index n, Index nb) { return (n + nb - 1) / nb; }

    /// Entries of the fused gradient's partial sums: n_params per lower tile of an nt x nt K.
    static std::size_t gradient_partial_count(Index nt, Index n_params)
    {
        return static_cast<std::size_t>(nt * (nt + 1) / 2) * static_cast<std::size_t>(n_params);
    }

    std::vector<double> theta_locked() const
    {
        std::vector<double> t = kernels::kernel_theta(kernel_);
        if (learned_noise_) t.push_back(std::log(*learned_noise_));
        if (constant_mean_) t.insert(t.end(), mean_.begin(), mean_.end());
        return t;
    }

    void check_theta(std::span<const double> theta) const
    {
        GPRAT_EXPECTS(static_cast<Index>(theta.size()) == n_params(),
                      "theta must have " << n_params() << " entries (log lengthscale(s), log signal_variance"
                                         << (learned_noise_ ? ", log noise_variance" : "")
                                         << (constant_mean_ ? ", constant mean per output" : "") << "); got "
                                         << theta.size());
        const std::size_t logs = theta.size() - static_cast<std::size_t>(mean_entries());
        for (std::size_t i = 0; i < theta.size(); ++i) {
            if (i < logs)
                GPRAT_EXPECTS(std::isfinite(theta[i]) && std::abs(theta[i]) < 700.0,
                              "theta must be finite log-hyperparameters (|theta| < 700); got " << theta[i]);
            else
                GPRAT_EXPECTS(std::isfinite(theta[i]), "the constant mean entries of theta must be finite; got " << theta[i]);
        }
    }

    bool factor_valid_locked() const
    {
        return factor_holds_cholesky_ && factor_theta_ == theta_locked() && factor_jitter_ == jitter_;
    }

    /// K <- k(X,X) + diag(s) + (sigma2 + jitter) I, L <- chol(K), A <- L^T \ (L \ (Y - 1 c^T));
    /// then optionally K^{-1} in place and the fused gradient pass, all in one task graph and one wait.
    double factorize_locked(const std::vector<double> theta, double* gradient)
    {
        const Index kp = kernels::kernel_params(kernel_);
        const kernels::AnyKernel k = kernels::kernel_with_theta(kernel_, std::span(theta).first(static_cast<std::size_t>(kp)));
        const std::optional<double> learned =
            learned_noise_ ? std::optional<double>(std::exp(theta[static_cast<std::size_t>(kp)])) : std::nullopt;
        std::vector<double> c(static_cast<std::size_t>(p_), 0.0);
        if (constant_mean_) std::copy(theta.end() - static_cast<std::ptrdiff_t>(p_), theta.end(), c.begin());
        // The diagonal: one scalar, or per row with a fixed per-sample noise. Adding a zero jitter
        // leaves the scalar noise exact (the default model's K is unchanged by the options).
        const double scalar = learned.value_or(0.0) + jitter_;
        if (!fixed_noise_.empty()) {
            diagonal_rows_.resize(fixed_noise_.size());
            for (std::size_t i = 0; i < fixed_noise_.size(); ++i) diagonal_rows_[i] = fixed_noise_[i] + scalar;
        }
        const double* rows = fixed_noise_.empty() ? nullptr : diagonal_rows_.data();
        factor_holds_cholesky_ = false;
        if (K_.rows() != n_) {
            K_ = Matrix(n_, n_, nb_, tiles::Structure::SymmetricLower);
            alpha_ = Matrix(n_, p_, nb_, alpha_column_tile(nb_, p_));
        }
        const Index nt = K_.nt();
        std::vector<double> log_diag(static_cast<std::size_t>(nt), 0.0);
        const Index grad_entries = kp + noise_entries();  // the entries the fused pass reduces
        std::vector<double> partial(gradient ? gradient_partial_count(nt, grad_entries) : 0, 0.0);

        runtime::TaskGraph g;
        assemble_covariance(K_, X_, X_, d_, k, scalar, g, rows);
        linalg::cholesky(K_, g);
        for (Index i = 0; i < nt; ++i)  // alpha <- Y - 1 c^T (tiles are column-major, Y row-major)
            g.add("copy_y", 0,
                  [y = y_ + K_.row0(i) * p_, p = p_, &c](tiles::TileView<T> a) {
                      if (p == 1 && c[0] == 0.0) {
                          std::copy(y, y + a.rows(), a.data());
                          return;
                      }
                      for (Index col = 0; col < p; ++col)
                          for (Index r = 0; r < a.rows(); ++r)
                              a(r, col) = static_cast<T>(static_cast<double>(y[r * p + col]) - c[static_cast<std::size_t>(col)]);
                  },
                  linalg::write(alpha_, i, 0));
        linalg::solve_lower(K_, Op::NoTrans, alpha_, g);  // alpha <- L \ y
        linalg::solve_lower(K_, Op::Trans, alpha_, g);    // alpha <- L^T \ alpha
        for (Index i = 0; i < nt; ++i)  // log_diag[i] = sum log L_jj over diagonal tile i
            g.add("logdet", 0,
                  [](tiles::TileView<T> l, double* out) {
                      double s = 0.0;
                      for (Index j = 0; j < l.rows(); ++j) s += std::log(static_cast<double>(l(j, j)));
                      *out = s;
                  },
                  linalg::read(K_, i, i), runtime::Write<double*>{&log_diag[static_cast<std::size_t>(i)]});
        const double learned_value = learned.value_or(0.0);
        const double* noise = learned ? &learned_value : nullptr;
        if (gradient) {
            linalg::spd_inverse_from_factor(K_, g);  // K <- K^{-1}
            std::visit(
                [&](const auto& kernel) {
                    std::size_t slot = 0;
                    for (Index j = 0; j < nt; ++j)
                        for (Index i = j; i < nt; ++i, slot += static_cast<std::size_t>(grad_entries)) {
                            // partial += (A A^T - p K^{-1})(i,j) o dK(i,j)/dtheta, fused
                            g.add("gradient", 0,
                                  [kp = &kernel, this, noise, i, j](tiles::TileView<T> kinv, tiles::TileView<T> ai,
                                                                    tiles::TileView<T> aj, double* out) {
                                      const kernels::GradientAlpha<T> a{ai.data(), aj.data(), ai.ld(), aj.ld(), p_};
                                      kernels::accumulate_gradient_tile(kinv, a, X_, K_.row0(i), K_.row0(j), d_, *kp,
                                                                        noise, out);
                                  },
                                  linalg::read(K_, i, j), linalg::read(alpha_, i, 0), linalg::read(alpha_, j, 0),
                                  runtime::Write<double*>{&partial[slot]});
                        }
                },
                k);
        }
        g.wait();

        // sum_j (y_j - c_j)^T a_j, and 1^T a_j for the mean gradient
        double y_alpha = 0.0, log_det = 0.0;
        std::vector<double> alpha_sum(static_cast<std::size_t>(p_), 0.0);
        for (Index i = 0; i < nt; ++i) {
            const tiles::TileView<T> a = alpha_.tile(i, 0);
            const T* y = y_ + K_.row0(i) * p_;
            if (p_ == 1 && !constant_mean_) {
                for (Index r = 0; r < a.rows(); ++r) y_alpha += static_cast<double>(y[r]) * static_cast<double>(a(r, 0));
            } else {
                for (Index col = 0; col < p_; ++col)
                    for (Index r = 0; r < a.rows(); ++r) {
                        const double ar = static_cast<double>(a(r, col));
                        y_alpha += (static_cast<double>(y[r * p_ + col]) - c[static_cast<std::size_t>(col)]) * ar;
                        alpha_sum[static_cast<std::size_t>(col)] += ar;
                    }
            }
            log_det += 2.0 * log_diag[static_cast<std::size_t>(i)];
        }
        const double p = static_cast<double>(p_);
        const double lml = -0.5 * y_alpha - 0.5 * p * log_det -
                           0.5 * static_cast<double>(n_ * p_) * std::log(2.0 * std::numbers::pi);
        if (gradient) {
            for (Index q = 0; q < grad_entries; ++q) gradient[q] = 0.0;
            for (std::size_t s = 0; s < partial.size(); s += static_cast<std::size_t>(grad_entries))
                for (Index q = 0; q < grad_entries; ++q) gradient[q] += partial[s + static_cast<std::size_t>(q)];
            for (Index q = 0; q < grad_entries; ++q) gradient[q] *= 0.5;
            if (constant_mean_)  // d/dc_j [-1/2 (y_j - c_j 1)^T K^{-1} (y_j - c_j 1)] = 1^T a_j
                for (Index col = 0; col < p_; ++col) gradient[grad_entries + col] = alpha_sum[static_cast<std::size_t>(col)];
        } else {
            factor_holds_cholesky_ = true;
            factor_theta_ = theta;
            factor_jitter_ = jitter_;
            lml_ = lml;
        }
        return lml;
    }

    void predict_locked(const T* Xs, Index m, T* mean, T* variance, T* covariance, bool include_noise) const
    {
        // Test points tiled by nbc columns, in passes of `chunk` points (predict_plan).
        const PredictPlan plan = predict_plan(n_, m, nb_, covariance != nullptr, runtime::Executor::instance().num_threads());
        const Index nbc = plan.nbc, chunk = plan.chunk;
        const double noise = include_noise ? learned_noise_.value_or(0.0) : 0.0;
        for (Index s = 0; s < m; s += chunk) {
            const Index mc = std::min(chunk, m - s);
            const T* Xc = Xs + s * d_;
            Matrix Kt(n_, mc, nb_, nbc), mean_t(mc, p_, nbc, alpha_.nbc()), var_t;
            std::optional<Matrix> C;
            runtime::TaskGraph g;
            assemble_covariance(Kt, X_, Xc, d_, kernel_, 0.0, g);  // K*^T(i,j) = k(X_i, Xs_j)
            linalg::transpose_times(Kt, alpha_, mean_t, g);                  // mean = K* alpha
            if (variance || covariance) { linalg::solve_lower(K_, Op::NoTrans, Kt, g); }  // V = L \ K*^T
            if (variance) {
                var_t = Matrix(mc, 1, nbc);
                assemble_prior_variance(var_t, Xc, d_, kernel_, noise, g);  // var <- k(x*, x*) + noise
                linalg::subtract_column_squares(Kt, var_t, g);  // var -= colsum(V o V)
            }
            if (covariance) {
                C.emplace(mc, mc, nbc, tiles::Structure::SymmetricLower);
                assemble_covariance(*C, Xc, Xc, d_, kernel_, noise, g);  // K** (+ noise I)
                linalg::subtract_gram(Kt, *C, g);                                  // cov = K** - V^T V
            }
            g.wait();
            for (Index j = 0; j < mean_t.mt(); ++j) {
                const tiles::TileView<T> t = mean_t.tile(j, 0);
                if (mean) {  // mean(r, col) = (K* A)(r, col) + c_col, row-major (m, p)
                    T* out = mean + (s + mean_t.row0(j)) * p_;
                    if (p_ == 1 && !constant_mean_) {
                        std::copy(t.data(), t.data() + t.rows(), out);
                    } else {
                        for (Index col = 0; col < p_; ++col)
                            for (Index r = 0; r < t.rows(); ++r)
                                out[r * p_ + col] =
                                    static_cast<T>(static_cast<double>(t(r, col)) + mean_[static_cast<std::size_t>(col)]);
                    }
                }
                if (variance) {
                    const tiles::TileView<T> v = var_t.tile(j, 0);
                    for (Index r = 0; r < v.rows(); ++r) variance[s + var_t.row0(j) + r] = std::max(v(r, 0), T(0));
                }
            }
            if (covariance) {
                tiles::copy_to_row_major(*C, covariance, m, false);
                for (Index i = 0; i < m; ++i)  // mirror the lower triangle
                    for (Index j = i + 1; j < m; ++j) covariance[i * m + j] = covariance[j * m + i];
            }
        }
    }

    kernels::AnyKernel kernel_;
    std::optional<double> learned_noise_;  ///< sigma2, or none (no theta entry)
    std::vector<double> fixed_noise_;      ///< s (n entries), or empty
    std::vector<double> mean_;             ///< c (p entries)
    std::vector<double> diagonal_rows_;    ///< s + sigma2 + jitter of the last factorization (with s)
    double jitter_ = 0.0;
    const T* X_;
    const T* y_;  ///< row-major (n, p)
    Index n_, d_, p_, nb_ = 1;
    bool constant_mean_;

    mutable std::shared_mutex mutex_;
    Matrix K_;      ///< lower tiles: K, L (factor_holds_cholesky_) or K^{-1} after a gradient step
    Matrix alpha_;  ///< n x 1
    bool factor_holds_cholesky_ = false;
    std::vector<double> factor_theta_;
    double factor_jitter_ = 0.0;
    double lml_ = 0.0;
};

}  // namespace gprat::gp
