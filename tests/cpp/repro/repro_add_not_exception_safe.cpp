/// Reproducer (not part of the suite): TaskGraph::add() is not exception-safe. new_task() has
/// already appended the task and declare_access() has recorded it as the last writer/reader of
/// its data when building the body (copying an argument) throws; the task is never submitted,
/// so every later task on the same data waits for it forever and wait() hangs.
///
/// Build:  g++ -std=c++20 -O1 -g -I cpp/include tests/cpp/repro/repro_add_not_exception_safe.cpp \
///             <build>/libgprat_core.a -lpthread -o /tmp/repro_add && /tmp/repro_add
/// Prints "BUG REPRODUCED ..." and exits 1; "not reproduced" and 0 once fixed.
#include <cstdio>
#include <future>
#include <stdexcept>
#include "gprat/runtime/executor.hpp"
#include "gprat/runtime/task_graph.hpp"
using namespace gprat::runtime;
struct ThrowingCopy {
    ThrowingCopy() = default;
    ThrowingCopy(const ThrowingCopy&) { throw std::runtime_error("copy failed"); }
};
int main() {
    Executor::instance().start(2);
    TaskGraph g;
    int x = 0;
    ThrowingCopy t;
    try { g.add("a", 0, [](int* p, const ThrowingCopy&) { *p = 1; }, Write<int*>{&x}, t); }
    catch (const std::exception& e) { std::printf("add threw: %s (size=%ld)\n", e.what(), (long)g.size()); }
    g.add("b", 0, [](int* p) { *p += 10; }, Write<int*>{&x});
    auto f = std::async(std::launch::async, [&] { g.wait(); });
    if (f.wait_for(std::chrono::seconds(3)) == std::future_status::timeout) {
        std::printf("BUG REPRODUCED: wait() hangs: task 'b' depends on the half-added task 'a' that is never submitted\n");
        std::fflush(stdout); std::_Exit(1);
    }
    std::printf("not reproduced x=%d\n", x); return 0;
}
