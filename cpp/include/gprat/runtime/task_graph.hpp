#pragma once
/// TaskGraph: sequential task flow. An algorithm is a plain loop that calls add(); each task
/// names the data it reads (Read<V>) and writes (Write<V>), and the graph derives the
/// dependencies (last writer / readers since, per datum) as PLASMA/QUARK and StarPU do.
/// Tasks start running as soon as their inputs are ready, while the loop is still adding.
///
/// Errors: an exception thrown by a task poisons it; every task that depends on it, directly or
/// not, is skipped, the rest of the graph is cancelled, and wait() rethrows the first exception
/// in the calling thread. An interrupt (see interrupt.hpp) cancels the graph the same way and
/// wait() throws Cancelled once the running tasks have returned.
#include <array>
#include <atomic>
#include <cstdint>
#include <condition_variable>
#include <deque>
#include <exception>
#include <limits>
#include <mutex>
#include <map>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gprat/core/types.hpp"
#include "gprat/runtime/access.hpp"
#include "gprat/runtime/task.hpp"

namespace gprat::runtime {

/// Where a graph's tasks run.
enum class Schedule
{
    /// On the executor's workers, as soon as their inputs are ready, while the adding loop goes
    /// on: the default.
    workers,
    /// In the adding thread, inside add(), one after the other in adding order (a valid order,
    /// since a task depends only on tasks added before it). For graphs with no parallelism to
    /// exploit (one tile), where each hand-off to a worker and back (a wake-up and a wait, tens
    /// of microseconds, more on a loaded machine) would cost more than the task: a small-n fit
    /// in a Bayesian-optimization loop runs a chain of ~10 such tasks per evaluation. Errors,
    /// poisoning, cancellation, tracing (worker -1: not a pool thread) and the runtime's
    /// lifecycle (suspend refuses new work) behave as with workers.
    caller,
};

class TaskGraph
{
  public:
    TaskGraph() = default;
    explicit TaskGraph(Schedule schedule) : schedule_(schedule) {}
    TaskGraph(const TaskGraph&) = delete;
    TaskGraph& operator=(const TaskGraph&) = delete;
    /// Cancels what has not started and waits for the rest; never throws.
    ~TaskGraph();

    /// Add a task that calls f(unwrap(args)...). Read/Write arguments become dependencies.
    /// @param name     static string, shown in traces
    /// @param priority higher-priority ready tasks run first (critical path)
    /// @throws InvalidArgument if an access overlaps a region known to the graph (or another
    ///         access of this task) without being the same region (see access.hpp); nothing is
    ///         added then.
    template <typename F, typename... Args>
    void add(const char* name, int priority, F&& f, Args&&... args)
    {
        constexpr std::size_t n_accesses = (std::size_t{0} + ... + is_access<std::remove_cvref_t<Args>>::value);
        std::array<detail::Access, n_accesses> accesses{};
        [[maybe_unused]] std::size_t k = 0;
        (collect_access(accesses, k, args), ...);  // before the arguments are moved into the body
        std::array<DataState*, n_accesses> states{};
        check_accesses(name, accesses.data(), states.data(), n_accesses);
        // Build the body before registering anything: copying the arguments may throw, and a
        // half-added task would block every later task on its data forever.
        std::function<void()> body = [fn = std::forward<F>(f),
                                      tup = std::make_tuple(std::forward<Args>(args)...)]() mutable {
            std::apply([&fn](auto&... a) { fn(unwrap(a)...); }, tup);
        };
        detail::Task& task = new_task(name, priority);
        for (std::size_t i = 0; i < n_accesses; ++i) declare(task, accesses[i], states[i]);
        task.body = std::move(body);
        submit(task);
    }

    /// Block until every task added so far has finished or been skipped. Rethrows the first
    /// exception a task threw; throws Cancelled if the graph was interrupted or cancelled.
    /// The graph can be used again afterwards.
    /// Called from inside a task (a nested graph), the worker runs other ready tasks while it
    /// waits instead of blocking (see Executor), and the graph is cancelled when the waiting
    /// task's own graph is.
    void wait();

    /// Skip every task that has not started yet. Safe to call from any thread.
    void cancel() noexcept { cancelled_.store(true, std::memory_order_release); }
    /// Cancelled, or (for a graph built inside a task, until its wait() returns) the graph of
    /// that task is: cancelling a graph reaches the graphs nested in its tasks.
    bool cancelled() const noexcept
    {
        return cancelled_.load(std::memory_order_acquire) || (parent_ != nullptr && parent_->cancelled());
    }

    /// Number of tasks added over the graph's life.
    Index size() const noexcept { return static_cast<Index>(tasks_.size()); }

  private:
    friend class Executor;

    /// A region seen since the last wait(), keyed in data_ by its first byte (and listed in
    /// regions_ too).
    struct DataState
    {
        std::uintptr_t end = 0;              ///< one past its last byte
        const char* declared_by = "";        ///< name of the first task that accessed it
        detail::Task* last_writer = nullptr;
        std::vector<detail::Task*> readers;  ///< since last_writer
    };

    detail::Task& new_task(const char* name, int priority);
    void depend(detail::Task& task, detail::Task* predecessor);
    /// Refuses (InvalidArgument) an access that overlaps a known region, or an earlier access
    /// of the same task, without being the same region. Registers nothing; states[i] is the
    /// known region of access i, or nullptr for a new one.
    void check_accesses(const char* name, const detail::Access* accesses, DataState** states, std::size_t n) const;
    /// Derives task's dependencies from one access; registers a new region first.
    void declare(detail::Task& task, const detail::Access& access, DataState* state);
    void submit(detail::Task& task);

    template <std::size_t N, typename A>
    static void collect_access(std::array<detail::Access, N>& out, std::size_t& k, const A& a)
    {
        if constexpr (is_access<std::remove_cvref_t<A>>::value) { out[k++] = detail::access_of(a); }
    }

    /// Called by the executor when a task finished or was skipped.
    void task_finished(std::exception_ptr error) noexcept;

    std::deque<detail::Task> tasks_;
    /// Known regions by first byte. An access to a known start is found here at hash cost; only
    /// a new start needs the ordered lookup in regions_ (once per region and wait()).
    std::unordered_map<std::uintptr_t, DataState> data_;
    std::map<std::uintptr_t, const DataState*> regions_;  ///< the same regions, ordered: disjoint
    std::atomic<Index> outstanding_{0};
    std::atomic<bool> cancelled_{false};
    bool acquired_ = false;
    Schedule schedule_ = Schedule::workers;
    Index recorded_as_ = -1;  ///< graph number in the GraphRecorder, -1 while not recorded
    int min_depth_ = std::numeric_limits<int>::max();  ///< smallest Task::depth added (see Executor)
    /// The graph of the task that added this graph's tasks (since the last wait()), or nullptr.
    /// Written by the adding thread before any task is scheduled, reset by wait() once none is
    /// outstanding.
    const TaskGraph* parent_ = nullptr;
    int helpers_ = 0;  ///< workers helping in wait() on this graph, guarded by mutex_
    std::mutex mutex_;
    std::condition_variable finished_cv_;
    std::exception_ptr error_;  ///< first task exception, guarded by mutex_
};

}  // namespace gprat::runtime
