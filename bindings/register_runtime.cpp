#include <pybind11/stl.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "gprat/linalg/tile_kernels.hpp"
#include "gprat/runtime/executor.hpp"
#include "gprat/runtime/graph_record.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "gprat/runtime/thread_count.hpp"
#include "registration.hpp"

namespace gprat::bindings {

namespace {
using runtime::Executor;

double seconds_since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

void register_runtime(py::module_& m)
{
    m.def("start", [](std::optional<Index> n) { without_gil([&] { Executor::instance().start(n); }); },
          py::arg("n_threads") = py::none());
    m.def("stop", [] { without_gil([] { Executor::instance().stop(); }); });
    m.def("suspend", [] { without_gil([] { Executor::instance().suspend(); }); });
    m.def("resume", [] { Executor::instance().resume(); });
    m.def("is_running", [] { return Executor::instance().running(); });
    m.def("is_suspended", [] { return Executor::instance().suspended(); });
    m.def("num_threads", [] { return Executor::instance().num_threads(); });
    m.def("available_cores", &runtime::available_cores);
    m.def(
        "_cgroup_dirs",
        [](const std::string& controller, const std::string& proc_self_cgroup, const std::string& root) {
            py::list out;
            for (const runtime::CgroupDir& d : runtime::cgroup_dirs(controller, proc_self_cgroup, root))
                out.append(py::make_tuple(d.path, d.v1));
            return out;
        },
        py::arg("controller"), py::arg("proc_self_cgroup"), py::arg("root"),
        "Test hook: the cgroup directories whose limits apply, as (path, is_v1) (mirrors gprat._memory).");
    m.def("_cgroup_quota_cores", &runtime::cgroup_quota_cores, py::arg("proc_self_cgroup"), py::arg("root"),
          "Test hook: CPU quota in cores of a (fake) cgroup tree; 0 = unlimited.");
    m.def("set_tracing", [](bool on) { Executor::instance().set_tracing(on); });
    m.def("take_trace", [] {
        py::list out;
        for (const runtime::TraceRecord& r : Executor::instance().take_trace())
            out.append(py::make_tuple(r.name, r.worker, r.start_ns, r.end_ns));
        return out;
    });
    m.def("set_graph_recording", [](bool on) { runtime::GraphRecorder::instance().set_enabled(on); });
    m.def("take_graph_dot", [] {
        const runtime::RecordedGraphs graphs = runtime::GraphRecorder::instance().take();
        py::list nodes, edges;
        for (const runtime::GraphNode& n : graphs.nodes) nodes.append(py::make_tuple(n.graph, n.task, n.name, n.priority));
        for (const runtime::GraphEdge& e : graphs.edges) edges.append(py::make_tuple(e.graph, e.from, e.to));
        return py::make_tuple(runtime::to_dot(graphs), nodes, edges);
    });

    // Benchmark and test hooks for the runtime itself.
    m.def(
        "bench_empty_tasks",
        [](Index n_tasks) {
            return without_gil([&] {
                const auto t0 = std::chrono::steady_clock::now();
                runtime::TaskGraph g;
                for (Index t = 0; t < n_tasks; ++t) g.add("empty", 0, [] {});
                g.wait();
                return seconds_since(t0);
            });
        },
        py::arg("n_tasks"), "Benchmark hook: seconds to run n independent empty tasks.");
    m.def(
        "bench_chain",
        [](Index n_tasks) {
            return without_gil([&] {
                int datum = 0;
                const auto t0 = std::chrono::steady_clock::now();
                runtime::TaskGraph g;
                for (Index t = 0; t < n_tasks; ++t) g.add("chain", 0, [](int* d) { ++*d; }, runtime::Write<int*>{&datum});
                g.wait();
                return seconds_since(t0);
            });
        },
        py::arg("n_tasks"), "Benchmark hook: seconds to run a chain of n empty tasks (one edge each).");
    m.def(
        "_worker_blas_threads",
        [] {
            return without_gil([] {
                int seen = 0;
                runtime::TaskGraph g;
                g.add("blas_threads", 0, [](int* out) { *out = linalg::blas_threads_in_this_thread(); },
                      runtime::Write<int*>{&seen});
                g.wait();
                return seen;
            });
        },
        "Test hook: the BLAS thread count seen by a BLAS call inside a worker task.");
    m.def(
        "sleep_tasks",
        [](Index n_tasks, double seconds) {
            without_gil([&] {
                runtime::TaskGraph g;
                for (Index t = 0; t < n_tasks; ++t)
                    g.add("sleep", 0, [seconds] { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); });
                g.wait();
            });
        },
        py::arg("n_tasks"), py::arg("seconds"), "Test hook: n independent tasks that sleep (interrupt tests).");
}

}  // namespace gprat::bindings
