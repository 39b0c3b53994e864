#pragma once
/// The process-wide pool of worker threads that runs ready tasks of every TaskGraph,
/// deepest first, then highest priority first. Lifecycle: start / stop / suspend / resume, lazy
/// start on first use.
///
/// Nested graphs: a task may build a TaskGraph and wait() on it (iterative solvers). The waiting
/// worker does not block: it runs ready tasks meanwhile ("helps"), taking only tasks at least as
/// deep as the graph it waits for, so that it cannot get stuck under unrelated outer work and
/// its stack grows by at most one frame per nesting level. Inner tasks (depth d + 1) run before
/// outer ones (depth d) on every worker, since finishing them frees a worker that waits; among
/// tasks of one depth, priority and then submission order decide. This cannot deadlock: a graph
/// depends only on its own tasks, which are always eligible for its waiter.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <queue>
#include <thread>
#include <vector>

#include "gprat/core/types.hpp"
#include "gprat/runtime/task.hpp"
#include "gprat/runtime/trace.hpp"

namespace gprat::runtime {

class Executor
{
  public:
    /// The process-wide executor. After fork() the child gets a fresh, stopped one.
    static Executor& instance();

    /// Start with n_threads workers (default: default_thread_count()). A no-op when running
    /// with that count; otherwise waits until idle and restarts. Clears a suspension.
    /// @throws InvalidArgument if n_threads <= 0.
    /// @throws RuntimeStateError when called from inside a task (start, stop and suspend wait
    ///         for the running graphs, the caller's own included).
    void start(std::optional<Index> n_threads = std::nullopt);
    /// Wait for running graphs to finish, then join the workers. Work after stop() restarts lazily.
    void stop();
    /// Wait for running graphs to finish, then park the workers (they sleep); new work is
    /// refused with RuntimeStateError until resume().
    void suspend();
    void resume();

    bool running() const;
    bool suspended() const;
    /// Workers of the running pool, or the count a lazy start would use.
    Index num_threads() const;

    /// A function every worker thread calls once when it starts, before it runs any task (the
    /// linear-algebra layer installs one that makes BLAS single-threaded in the worker). Affects
    /// workers started afterwards: install it before the first start.
    using WorkerStart = void (*)();
    void set_worker_start(WorkerStart f) noexcept { worker_start_.store(f, std::memory_order_release); }

    void set_tracing(bool enabled);
    bool tracing() const noexcept { return tracing_.load(std::memory_order_relaxed); }
    /// Remove and return the records collected so far, ordered by start time.
    std::vector<TraceRecord> take_trace();

    /// Internal (TaskGraph): a graph starts using workers (starts lazily, refuses when suspended).
    /// Waits while a start/stop/suspend is waiting for the running graphs to finish, so that a
    /// stream of new graphs from other threads cannot postpone that change forever.
    void acquire();
    /// Internal (TaskGraph): a graph acquired before has no outstanding tasks any more.
    void release();
    /// Internal (TaskGraph): queue a task whose predecessors are all done.
    void schedule(detail::Task* task);

    Executor() = default;
    Executor(const Executor&) = delete;
    Executor& operator=(const Executor&) = delete;
    ~Executor();

  private:
    struct Later
    {
        bool operator()(const detail::Task* a, const detail::Task* b) const noexcept
        {
            if (a->depth != b->depth) { return a->depth < b->depth; }
            return a->priority != b->priority ? a->priority < b->priority : a->sequence > b->sequence;
        }
    };

    void start_locked(Index n_threads);
    void stop_locked(std::unique_lock<std::mutex>& lifecycle);
    void wait_idle_locked(std::unique_lock<std::mutex>& lifecycle);

    /// Marks a lifecycle change as pending for its scope; the caller holds lifecycle_mutex_
    /// at construction and destruction (it is released only inside condition waits).
    class PendingChange
    {
      public:
        explicit PendingChange(Executor& e) noexcept : e_(e) { ++e_.pending_changes_; }
        ~PendingChange()
        {
            if (--e_.pending_changes_ == 0) { e_.change_cv_.notify_all(); }
        }
        PendingChange(const PendingChange&) = delete;
        PendingChange& operator=(const PendingChange&) = delete;

      private:
        Executor& e_;
    };
    void worker_loop(Index worker);
    void execute(detail::Task* task, Index worker);
    /// TaskGraph with Schedule::caller: run a ready task in the calling thread (traced as this
    /// thread's worker index, -1 outside the pool).
    void execute_here(detail::Task* task);
    void refuse_inside_task(const char* what) const;
    /// The task the calling thread is running (innermost), or nullptr outside tasks.
    static detail::Task* current_task() noexcept;
    /// TaskGraph::wait() on a worker: run ready tasks of depth >= min_depth until g has no
    /// outstanding task. Cancels g when `enclosing` (the graph of the task that waits) is
    /// cancelled or the thread's interrupt check fires; returns whether it did.
    bool help_until_finished(TaskGraph& g, int min_depth, const TaskGraph* enclosing);
    /// TaskGraph: g finished while a worker helped on it; wake the helper.
    void wake_helpers();
    static void after_fork_in_child();

    // Lifecycle state, guarded by lifecycle_mutex_.
    mutable std::mutex lifecycle_mutex_;
    std::condition_variable idle_cv_;
    std::vector<std::thread> workers_;
    Index active_graphs_ = 0;
    Index pending_changes_ = 0;        ///< start/stop/suspend calls waiting for idle
    std::condition_variable change_cv_;  ///< signalled when pending_changes_ drops to 0
    bool suspended_ = false;

    // Ready queue, guarded by queue_mutex_.
    std::mutex queue_mutex_;
    std::condition_variable queue_cv_;
    std::priority_queue<detail::Task*, std::vector<detail::Task*>, Later> ready_;
    bool stopping_ = false;
    Index blocked_helpers_ = 0;  ///< helpers asleep on queue_cv_: schedule() then wakes all sleepers
    std::atomic<std::uint64_t> next_sequence_{0};
    std::atomic<WorkerStart> worker_start_{nullptr};

    std::atomic<bool> tracing_{false};
    std::mutex trace_mutex_;
    std::vector<TraceRecord> trace_;

    friend class TaskGraph;
};

}  // namespace gprat::runtime
