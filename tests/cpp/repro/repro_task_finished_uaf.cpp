/// Reproducer (not part of the suite): TaskGraph::task_finished() touches the graph after the
/// waiter may already have returned from wait() and destroyed it.
///
///   task_finished():  if (outstanding_.fetch_sub(1) == 1) { std::lock_guard lock(mutex_); finished_cv_.notify_all(); }
///   wait():           std::unique_lock lock(mutex_); while (outstanding_.load() != 0) {...}   // sees 0, returns
///
/// A worker preempted between the fetch_sub and the lock lets a waiter that arrives (or wakes
/// from its 20 ms interrupt-poll timeout) see outstanding_ == 0, return, and destroy the graph;
/// the worker then locks and notifies a destroyed mutex/condition variable (heap-use-after-free).
///
/// To make the preemption deterministic this program interposes pthread_mutex_lock: a worker
/// thread locking a mutex that lies inside the TaskGraph object sleeps 200 ms first. The main
/// thread calls wait() 50 ms after adding the single task, so it finds outstanding_ == 0, returns,
/// and deletes the graph while the worker is about to lock graph->mutex_.
///
/// Build:  g++ -std=c++20 -O1 -g -I cpp/include tests/cpp/repro/repro_task_finished_uaf.cpp \
///             <build>/libgprat_core.a -lpthread -ldl -o /tmp/repro_uaf && /tmp/repro_uaf
/// Prints "BUG REPRODUCED ..." and exits 1; prints "not reproduced" and exits 0 once fixed.
#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "gprat/runtime/executor.hpp"
#include "gprat/runtime/task_graph.hpp"

namespace {
std::atomic<const char*> graph_begin{nullptr};
std::atomic<const char*> graph_end{nullptr};
std::atomic<bool> graph_gone{false};
std::atomic<bool> delayed{false};
thread_local bool is_main_thread = false;

using LockFn = int (*)(pthread_mutex_t*);
LockFn real_lock = nullptr;
bool resolving = false;
/// Resolve glibc's pthread_mutex_lock before any thread exists (dlsym may lock internally:
/// those nested calls happen single-threaded and are skipped).
__attribute__((constructor)) void resolve_real_lock()
{
    resolving = true;
    real_lock = reinterpret_cast<LockFn>(dlsym(RTLD_NEXT, "pthread_mutex_lock"));
    resolving = false;
}
}  // namespace

extern "C" int pthread_mutex_lock(pthread_mutex_t* m)
{
    const char* p = reinterpret_cast<const char*>(m);
    const char* b = graph_begin.load();
    if (!is_main_thread && b != nullptr && p >= b && p < graph_end.load() && !delayed.exchange(true)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        if (graph_gone.load()) {
            std::printf("BUG REPRODUCED: a worker locks TaskGraph::mutex_ (in task_finished) after wait() "
                        "returned and the graph was deleted: heap-use-after-free\n");
            std::fflush(stdout);
            std::_Exit(1);  // stop before actually touching freed memory
        }
    }
    if (real_lock == nullptr) {
        if (resolving) return 0;
        resolve_real_lock();
    }
    return real_lock(m);
}

int main()
{
    is_main_thread = true;
    using namespace gprat::runtime;
    Executor::instance().start(1);
    auto* g = new TaskGraph();
    int x = 0;
    graph_begin = reinterpret_cast<const char*>(g);
    graph_end = reinterpret_cast<const char*>(g) + sizeof(TaskGraph);
    g->add("t", 0, [](int* p) { *p = 1; }, Write<int*>{&x});
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the task has run; worker is in task_finished
    g->wait();                                                    // outstanding_ == 0: returns at once
    graph_begin = nullptr;
    graph_gone = true;
    delete g;
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    std::printf("not reproduced (x=%d)\n", x);
    return 0;
}
