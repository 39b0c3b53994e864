/// gprat._core.minimize_box_lbfgs: the C++ L-BFGS over a Python objective.
#include "box_lbfgs.hpp"

#include <string>

namespace gprat::bindings {

void register_box_lbfgs(py::module_& m)
{
    m.def(
        "minimize_box_lbfgs",
        [](const py::object& fun, std::vector<double> x0, const std::vector<double>& lower,
           const std::vector<double>& upper, Index max_iter, Index memory) {
            // fun(x) -> (value, gradient), or None for a failed point; Python exceptions propagate.
            auto eval = [&](const std::vector<double>& x, double& f, std::vector<double>& g) {
                const py::object out = fun(py::array_t<double>(static_cast<py::ssize_t>(x.size()), x.data()));
                if (out.is_none()) return false;
                const auto pair = out.cast<py::tuple>();
                GPRAT_EXPECTS(pair.size() == 2, "fun must return (value, gradient) or None; got a tuple of "
                                                    << pair.size());
                f = pair[0].cast<double>();
                const auto grad = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(pair[1]);
                GPRAT_EXPECTS(grad && grad.ndim() == 1 && static_cast<std::size_t>(grad.shape(0)) == x.size(),
                              "fun's gradient must have " << x.size() << " entries");
                std::copy(grad.data(), grad.data() + x.size(), g.begin());
                return true;
            };
            optim::BoxLbfgsOptions options;
            options.max_iter = max_iter;
            options.memory = memory;
            const optim::BoxLbfgsResult r = optim::minimize_box_lbfgs(eval, std::move(x0), lower, upper, options,
                                                                      [](Index, double) {});
            return box_lbfgs_result(r, r.x, r.loss);
        },
        py::arg("fun"), py::arg("x0"), py::arg("lower"), py::arg("upper"), py::arg("max_iter") = 100,
        py::arg("memory") = 10,
        "Minimize fun(x) -> (value, gradient) or None (a failed point) over lower <= x <= upper with the "
        "C++ bound-constrained L-BFGS. Returns (x_best, value_best, n_iter, n_eval, n_failed, converged, "
        "message); x_best is empty when every point failed.");
}

}  // namespace gprat::bindings
