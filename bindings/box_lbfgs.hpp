#pragma once
/// The C++ L-BFGS (gprat/optim/box_lbfgs.hpp) as the bindings use it: over an engine's training
/// step (the whole fit without Python per trial point), and over a Python callable (tests, and
/// objectives that live in Python).
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "gprat/optim/box_lbfgs.hpp"
#include "registration.hpp"

namespace gprat::bindings {

/// What both entry points return: (x, loss or value, n_iter, n_eval, n_failed, converged, message).
inline py::tuple box_lbfgs_result(const optim::BoxLbfgsResult& r, std::vector<double> x, double value)
{
    return py::make_tuple(std::move(x), value, r.n_iter, r.n_eval, r.n_failed, r.converged, r.message);
}

/// Maximize step(theta, gradient) -> log marginal likelihood over the entries of theta where
/// `trainable` is true, inside [lo, hi] (full-length bounds), with the GIL released. The loss is
/// -lml / s with s = max(1, the largest |gradient entry| at the first good point): the first
/// step then moves no entry by more than one log unit (see ExactGP.optimize's Notes).
/// A trial point where step throws NotPositiveDefinite, or gives a non-finite value, fails.
/// on_iteration(iteration, lml) is called with the GIL after each iteration (None: not at all);
/// pending signals are checked after every evaluation, so Ctrl-C ends the fit within one step.
/// @return (theta at the best point, its lml, n_iter, n_eval, n_failed, converged, message);
///         the best point is theta0 with n_eval == n_failed when every point failed.
template <class Step>
py::tuple maximize_with_box_lbfgs(Step&& step, std::vector<double> theta, const std::vector<bool>& trainable,
                                  const std::vector<double>& lo, const std::vector<double>& hi, Index max_iter,
                                  const py::object& on_iteration)
{
    const std::size_t n = theta.size();
    GPRAT_EXPECTS(trainable.size() == n && lo.size() == n && hi.size() == n,
                  "theta, trainable and the bounds must have the same length; got " << n << ", " << trainable.size()
                                                                                     << ", " << lo.size() << ", "
                                                                                     << hi.size());
    std::vector<std::size_t> free;
    for (std::size_t i = 0; i < n; ++i)
        if (trainable[i]) free.push_back(i);
    GPRAT_EXPECTS(!free.empty(), "no entry of theta is trainable");
    std::vector<double> x0(free.size()), flo(free.size()), fhi(free.size());
    for (std::size_t k = 0; k < free.size(); ++k) {
        x0[k] = theta[free[k]];
        flo[k] = lo[free[k]];
        fhi[k] = hi[free[k]];
    }
    std::vector<double> full = theta, gradient(n);
    double scale = 0.0;  // fixed by the first good point
    auto eval = [&](const std::vector<double>& x, double& loss, std::vector<double>& g) {
        for (std::size_t k = 0; k < free.size(); ++k) full[free[k]] = x[k];
        double lml = 0.0;
        bool ok = true;
        try {
            lml = step(full, gradient.data());
        } catch (const NotPositiveDefinite&) {
            ok = false;
        }
        const runtime::InterruptCheck pending = runtime::current_interrupt_check();
        if (pending != nullptr && pending()) throw Cancelled("interrupted");
        if (!ok || !std::isfinite(lml)) return false;
        if (scale == 0.0) {
            scale = 1.0;
            for (std::size_t k = 0; k < free.size(); ++k) scale = std::max(scale, std::abs(gradient[free[k]]));
        }
        loss = -lml / scale;
        for (std::size_t k = 0; k < free.size(); ++k) g[k] = -gradient[free[k]] / scale;
        return true;
    };
    auto report = [&](Index iteration, double loss) {
        if (on_iteration.is_none()) return;
        py::gil_scoped_acquire gil;
        on_iteration(iteration, -loss * scale);
    };
    optim::BoxLbfgsOptions options;
    options.max_iter = max_iter;
    const optim::BoxLbfgsResult r =
        without_gil([&] { return optim::minimize_box_lbfgs(eval, x0, flo, fhi, options, report); });
    std::vector<double> best = theta;
    if (!r.x.empty())
        for (std::size_t k = 0; k < free.size(); ++k) best[free[k]] = r.x[k];
    return box_lbfgs_result(r, std::move(best), r.x.empty() ? std::nan("") : -r.loss * scale);
}

/// Define `maximize_lbfgs` on the Python class of a bound engine G (any wrapper whose
/// `engine.training_step(theta, gradient)` is the exact GP's step: the CPU and the CUDA engines).
template <class G, class PyClass>
void def_maximize_lbfgs(PyClass& cls)
{
    cls.def(
        "maximize_lbfgs",
        [](G& g, std::vector<double> theta, const std::vector<bool>& trainable, const std::vector<double>& lower,
           const std::vector<double>& upper, Index max_iter, const py::object& on_iteration) {
            return maximize_with_box_lbfgs(
                [&g](const std::vector<double>& t, double* gradient) { return g.engine.training_step(t, gradient); },
                std::move(theta), trainable, lower, upper, max_iter, on_iteration);
        },
        py::arg("theta"), py::arg("trainable"), py::arg("lower"), py::arg("upper"), py::arg("max_iter"),
        py::arg("on_iteration"),
        "Maximize the log marginal likelihood over the trainable entries of theta inside [lower, upper] with the "
        "C++ bound-constrained L-BFGS (training steps only; the model's theta is not changed). Returns "
        "(theta_best, lml_best, n_iter, n_eval, n_failed, converged, message).");
}

}  // namespace gprat::bindings
