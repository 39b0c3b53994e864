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
        std::shared_lock lock = shared_lock_with_factor();
        predict_locked(Xs, m, mean, variance, covariance, include_noise);
    }

    /// out <- K^{-1} B for B row-major (n, k) (out likewise): L \ B then L^T \ (.) with the factor,
    /// refactoring first if it is not current. 2 n^2 k flops.
    void solve(const T* B, Index k, T* out)
    {
        GPRAT_EXPECTS(k >= 1, "solve needs at least one right-hand side; got " << k);
        std::shared_lock lock = shared_lock_with_factor();
        Matrix R(n_, k, nb_, std::max(nb_, k));
        tiles::copy_from_row_major(B, k, R);
        runtime::TaskGraph g(schedule_for(K_.nt() * R.nt()));
        linalg::solve_lower(K_, Op::NoTrans, R, g);
        linalg::solve_lower(K_, Op::Trans, R, g);
        g.wait();
        tiles::copy_to_row_major(R, out, k);
    }

    /// The lower Cholesky factor L as a dense row-major (n, n) array (upper part zero).
    void cholesky_factor(T* out)
    {
        std::unique_lock lock(mutex_);
        if (!factor_valid_locked()) { factorize_locked(theta_locked(), nullptr); }
        tiles::copy_to_row_major(K_, out, n_);
    }

    /// A model equal to `other` (same data pointers, hyperparameters, jitter and factor, copied):
    /// the start of a fantasy model (condition_on).
    ExactGP(const ExactGP& other)
        : ExactGP(other, std::shared_lock(other.mutex_))
    {}
    ExactGP& operator=(const ExactGP&) = delete;

    /// Add k observations (rows X_all[n:], Y_all[n:]) with the hyperparameters unchanged, by a
    /// block update of the factor instead of a refactorization:
    ///   K' = [K  K_XN; K_NX  K_NN + D_N] = L' L'^T,   L' = [L  0; B^T  C],
    ///   B = L \ K_XN (n x k),   C = chol(K_NN + D_N - B^T B) (k x k),
    ///   z' = L' \ (Y' - 1 c^T) = [z; C \ (Y_N - 1 c^T - B^T z)],   A' = L'^T \ z',
    /// with D_N the new rows' diagonal (their fixed noise + sigma2 + jitter) and z = L \ (Y - 1 c^T)
    /// kept from the last factorization. Cost n^2 k (B) + n k^2 + k^3 (C) + n^2 p (A'), against
    /// n^3/3 for a refactorization; the tiles of L that keep their shape are moved, not copied.
    /// Without a current factor (never fitted, theta changed, or K^{-1} in place after a training
    /// step) only the data change and the next use factorizes at n + k.
    /// @param X_all row-major (n + k, d): the current inputs followed by the new ones; Y_all (n + k, p)
    ///        likewise. Both are borrowed like X and Y; their first n rows must equal the current data.
    /// @param fixed_noise_new the new rows' per-sample noise (k entries) when the model has a fixed
    ///        noise, else empty.
    /// @throws NotPositiveDefinite if K_NN + D_N - B^T B is not positive definite; the model is then
    ///        unchanged, as on any other failure.
    void add_observations(const T* X_all, const T* Y_all, Index k, std::span<const double> fixed_noise_new)
    {
        GPRAT_EXPECTS(k >= 1, "add_observations needs at least one new row; got " << k);
        GPRAT_EXPECTS(static_cast<Index>(fixed_noise_new.size()) == (has_fixed_noise() ? k : 0),
                      (has_fixed_noise() ? "the model has a per-sample noise: give one noise value per new row ("
                                         : "the model has no per-sample noise: give no noise values (")
                          << (has_fixed_noise() ? k : 0) << " expected); got " << fixed_noise_new.size());
        for (double v : fixed_noise_new)
            GPRAT_EXPECTS(std::isfinite(v) && v >= 0.0, "per-sample noise variances must be finite and >= 0; got " << v);
        std::unique_lock lock(mutex_);
        std::vector<double> fixed = fixed_noise_;
        fixed.insert(fixed.end(), fixed_noise_new.begin(), fixed_noise_new.end());
        if (!factor_valid_locked()) {
            factor_holds_cholesky_ = false;
            X_ = X_all;
            y_ = Y_all;
            n_ += k;
            fixed_noise_ = std::move(fixed);
            return;
        }
        extend_factor_locked(X_all, Y_all, k, std::move(fixed));
    }

    // Memory estimates. The engine owns them: each is computed from the same helpers the
    // algorithms below use to size what they allocate, so they cannot drift apart. nb is the
    // model's tile size (tile_size(); larger values are clamped to n as the constructor does).

    /// Bytes the model holds once fitted (K, alpha and z tiles): what fit will allocate.
    /// @param outputs p, the columns of alpha.
    static std::size_t fit_bytes(Index n, Index nb, Index outputs = 1)
    {
        check_sizes(n, 1, nb);
        GPRAT_EXPECTS(outputs >= 1, "outputs must be positive; got " << outputs);
        nb = std::min(nb, n);
        // K, alpha and z = L \ (Y - 1 c^T) (kept for add_observations)
        return Matrix::bytes_needed(n, n, nb, tiles::Structure::SymmetricLower) +
               2 * Matrix::bytes_needed(n, outputs, nb, alpha_column_tile(nb, outputs), tiles::Structure::General);
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
    /// Where a graph over `tiles` tiles (all its operands together) runs: with one tile nothing
    /// can run in parallel, and handing each of its ~10 chained tasks to a worker and back costs
    /// more than the task itself at small n (the BO loop's fits), so it runs in the calling
    /// thread.
    static runtime::Schedule schedule_for(Index tiles)
    {
        return tiles == 1 ? runtime::Schedule::caller : runtime::Schedule::workers;
    }

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

    bool factor_valid_locked() const { return factor_valid_for_locked(theta_locked()); }

    /// Whether the factor held is the Cholesky factor at theta and the current jitter.
    bool factor_valid_for_locked(const std::vector<double>& theta) const
    {
        return factor_holds_cholesky_ && factor_theta_ == theta && factor_jitter_ == jitter_;
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
        // A gradient at the theta and jitter of the factor held (fit() then optimize(): the first
        // trial point is the fitted one) reuses it and alpha: only log det K, K^{-1} and the
        // gradient pass are left.
        const bool reuse_factor = gradient && factor_valid_for_locked(theta);
        factor_holds_cholesky_ = false;
        if (K_.rows() != n_) {
            K_ = Matrix(n_, n_, nb_, tiles::Structure::SymmetricLower);
            alpha_ = Matrix(n_, p_, nb_, alpha_column_tile(nb_, p_));
            z_ = Matrix(n_, p_, nb_, alpha_column_tile(nb_, p_));
        }
        const Index nt = K_.nt();
        std::vector<double> log_diag(static_cast<std::size_t>(nt), 0.0);
        const Index grad_entries = kp + noise_entries();  // the entries the fused pass reduces
        std::vector<double> partial(gradient ? gradient_partial_count(nt, grad_entries) : 0, 0.0);

        runtime::TaskGraph g(schedule_for(nt * alpha_.nt()));
        if (!reuse_factor) {
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
            if (!gradient) copy_tiles(alpha_, z_, g);         // z <- L \ y, for add_observations
            linalg::solve_lower(K_, Op::Trans, alpha_, g);    // alpha <- L^T \ alpha
        }
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

        double log_det = 0.0;
        for (Index i = 0; i < nt; ++i) log_det += 2.0 * log_diag[static_cast<std::size_t>(i)];
        std::vector<double> alpha_sum(static_cast<std::size_t>(p_), 0.0);
        const double lml = lml_from_solution(c, log_det, alpha_sum);
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

    ExactGP(const ExactGP& other, std::shared_lock<std::shared_mutex>)
        : kernel_(other.kernel_), learned_noise_(other.learned_noise_), fixed_noise_(other.fixed_noise_),
          mean_(other.mean_), jitter_(other.jitter_), X_(other.X_), y_(other.y_), n_(other.n_), d_(other.d_),
          p_(other.p_), nb_(other.nb_), constant_mean_(other.constant_mean_), K_(other.K_.clone()),
          alpha_(other.alpha_.clone()), z_(other.z_.clone()), factor_holds_cholesky_(other.factor_holds_cholesky_),
          factor_theta_(other.factor_theta_), factor_jitter_(other.factor_jitter_), lml_(other.lml_)
    {}

    /// A shared lock on the model with a current factor (factorizing first, exclusively, if needed).
    std::shared_lock<std::shared_mutex> shared_lock_with_factor()
    {
        std::shared_lock lock(mutex_);
        while (!factor_valid_locked()) {
            lock.unlock();
            {
                std::unique_lock exclusive(mutex_);
                if (!factor_valid_locked()) { factorize_locked(theta_locked(), nullptr); }
            }
            lock.lock();
        }
        return lock;
    }

    /// The block update of add_observations on a valid factor (see there).
    void extend_factor_locked(const T* X_all, const T* Y_all, Index k, std::vector<double> fixed)
    {
        const Index n0 = n_, n1 = n_ + k, cols = alpha_column_tile(nb_, p_);
        const T* Xn = X_all + n0 * d_;
        const T* Yn = Y_all + n0 * p_;
        const double scalar = learned_noise_.value_or(0.0) + jitter_;
        std::vector<double> rows_new;  // D_N per row, with a fixed noise
        if (has_fixed_noise())
            for (Index r = 0; r < k; ++r) rows_new.push_back(fixed[static_cast<std::size_t>(n0 + r)] + scalar);

        // Phase 1, nothing of the model touched: B, C and the new rows of z.
        Matrix B(n0, k, nb_), C(k, k, nb_, tiles::Structure::SymmetricLower), Bz(k, p_, nb_, cols), zn(k, p_, nb_, cols);
        {
            runtime::TaskGraph g;
            assemble_covariance(B, X_, Xn, d_, kernel_, 0.0, g);  // K_XN
            linalg::solve_lower(K_, Op::NoTrans, B, g);           // B = L \ K_XN
            assemble_covariance(C, Xn, Xn, d_, kernel_, scalar, g, rows_new.empty() ? nullptr : rows_new.data());
            linalg::subtract_gram(B, C, g);  // K_NN + D_N - B^T B
            linalg::cholesky(C, g);          // C
            linalg::transpose_times(B, z_, Bz, g);  // B^T z
            for (Index i = 0; i < zn.mt(); ++i)      // zn <- Y_N - 1 c^T - B^T z
                g.add("copy_y", 0,
                      [y = Yn + zn.row0(i) * p_, p = p_, this](tiles::TileView<T> bz, tiles::TileView<T> out) {
                          for (Index col = 0; col < p; ++col)
                              for (Index r = 0; r < out.rows(); ++r)
                                  out(r, col) = static_cast<T>(static_cast<double>(y[r * p + col]) -
                                                               mean_[static_cast<std::size_t>(col)] -
                                                               static_cast<double>(bz(r, col)));
                      },
                      linalg::read(Bz, i, 0), linalg::write(zn, i, 0));
            linalg::solve_lower(C, Op::NoTrans, zn, g);  // C \ (...)
            g.wait();
        }

        // Phase 2: allocate the grown matrices (may throw; nothing moved yet), then move the kept
        // tiles in, fill the others from L (its ragged last tile row), B^T, C and zn, and solve.
        Matrix K1 = K_.grown_shell(n1, n1), z1 = z_.grown_shell(n1, p_), a1 = alpha_.grown_shell(n1, p_);
        K1.adopt_kept_tiles(K_);
        z1.adopt_kept_tiles(z_);
        a1.adopt_kept_tiles(alpha_);
        {
            runtime::TaskGraph g;
            const Index t0 = n0 / nb_;  // first tile row that holds a new row
            for (Index j = 0; j <= K1.nt() - 1; ++j)
                for (Index i = std::max(j, t0); i < K1.mt(); ++i)
                    g.add("grow_factor", 0,
                          [&, i, j](tiles::TileView<T> t) {
                              const Index r0 = K1.row0(i), c0 = K1.col0(j);
                              const Index old_rows = std::clamp<Index>(n0 - r0, 0, t.rows());
                              for (Index cc = 0; cc < t.cols(); ++cc) {
                                  const Index c = c0 + cc;
                                  T* out = t.data() + cc * t.ld();
                                  if (old_rows > 0 && c < n0)  // rows < n0: L's ragged tile (i, j)
                                      std::copy_n(K_.tile(i, j).data() + cc * K_.tile(i, j).ld(), old_rows, out);
                                  else if (old_rows > 0)  // rows < n0 <= c: above the diagonal
                                      std::fill_n(out, old_rows, T(0));
                                  for (Index rr = old_rows; rr < t.rows(); ++rr) {
                                      const Index r = r0 + rr - n0;  // row of the new block
                                      out[rr] = c < n0 ? entry(B, c, r) : (c - n0 <= r ? entry(C, r, c - n0) : T(0));
                                  }
                                  if (i == j)  // the strict upper part of a diagonal tile is zero
                                      for (Index rr = 0; rr < std::min(cc, t.rows()); ++rr) out[rr] = T(0);
                              }
                          },
                          linalg::write(K1, i, j));
            for (Index i = t0; i < z1.mt(); ++i)
                g.add("grow_z", 0,
                      [&, i](tiles::TileView<T> t) {
                          const Index r0 = z1.row0(i);
                          const Index old_rows = std::clamp<Index>(n0 - r0, 0, t.rows());
                          for (Index col = 0; col < t.cols(); ++col) {
                              if (old_rows > 0) std::copy_n(z_.tile(i, 0).data() + col * z_.tile(i, 0).ld(), old_rows, t.data() + col * t.ld());
                              for (Index rr = old_rows; rr < t.rows(); ++rr) t(rr, col) = entry(zn, r0 + rr - n0, col);
                          }
                      },
                      linalg::write(z1, i, 0));
            copy_tiles(z1, a1, g);
            linalg::solve_lower(K1, Op::Trans, a1, g);  // A' = L'^T \ z'
            g.wait();
        }
        K_ = std::move(K1);
        z_ = std::move(z1);
        alpha_ = std::move(a1);
        X_ = X_all;
        y_ = Y_all;
        n_ = n1;
        fixed_noise_ = std::move(fixed);
        std::vector<double> alpha_sum(static_cast<std::size_t>(p_), 0.0);
        lml_ = lml_from_solution(mean_, linalg::log_determinant_from_factor(K_), alpha_sum);
    }

    /// Entry (r, c) of a tiled matrix (stored part).
    static T entry(const Matrix& A, Index r, Index c)
    {
        return A.tile(r / A.nb(), c / A.nbc())(r % A.nb(), c % A.nbc());
    }

    /// log p(Y|X) = sum_j [-1/2 (y_j - c_j)^T a_j] - p/2 log det K - p n/2 log(2 pi) from alpha_ and
    /// log det K; alpha_sum[j] <- 1^T a_j (the mean gradient).
    double lml_from_solution(const std::vector<double>& c, double log_det, std::vector<double>& alpha_sum) const
    {
        double y_alpha = 0.0;
        for (Index i = 0; i < alpha_.mt(); ++i) {
            const tiles::TileView<T> a = alpha_.tile(i, 0);
            const T* y = y_ + alpha_.row0(i) * p_;
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
        }
        return -0.5 * y_alpha - 0.5 * static_cast<double>(p_) * log_det -
               0.5 * static_cast<double>(n_ * p_) * std::log(2.0 * std::numbers::pi);
    }

    /// Tasks dst(i, j) <- src(i, j) for every tile (same shape and tiling).
    static void copy_tiles(const Matrix& src, const Matrix& dst, runtime::TaskGraph& g)
    {
        for (Index j = 0; j < src.nt(); ++j)
            for (Index i = 0; i < src.mt(); ++i)
                g.add("copy", 0,
                      [](tiles::TileView<T> a, tiles::TileView<T> b) {
                          for (Index col = 0; col < a.cols(); ++col)
                              std::copy(a.data() + col * a.ld(), a.data() + col * a.ld() + a.rows(), b.data() + col * b.ld());
                      },
                      linalg::read(src, i, j), linalg::write(dst, i, j));
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
            runtime::TaskGraph g(schedule_for(K_.nt() * Kt.nt()));
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
    Matrix alpha_;  ///< A = K^{-1} (Y - 1 c^T), n x p
    Matrix z_;      ///< z = L \ (Y - 1 c^T), n x p: with L, what add_observations extends
    bool factor_holds_cholesky_ = false;
    std::vector<double> factor_theta_;
    double factor_jitter_ = 0.0;
    double lml_ = 0.0;
};

}  // namespace gprat::gp
