#include "gprat/runtime/task_graph.hpp"

#include <algorithm>
#include <chrono>

#include "gprat/core/errors.hpp"
#include "gprat/runtime/executor.hpp"
#include "gprat/runtime/graph_record.hpp"
#include "gprat/runtime/interrupt.hpp"

namespace gprat::runtime {

namespace {
thread_local InterruptCheck installed_check = nullptr;
}

ScopedInterruptCheck::ScopedInterruptCheck(InterruptCheck check) noexcept : previous_(installed_check)
{
    installed_check = check;
}
ScopedInterruptCheck::~ScopedInterruptCheck() { installed_check = previous_; }
InterruptCheck current_interrupt_check() noexcept { return installed_check; }

TaskGraph::~TaskGraph()
{
    if (outstanding_.load(std::memory_order_acquire) == 0 && !acquired_) { return; }
    cancel();
    ScopedInterruptCheck no_check(nullptr);
    try {
        wait();
    } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw; the error had no reader
    }
}

detail::Task& TaskGraph::new_task(const char* name, int priority)
{
    const detail::Task* adder = Executor::current_task();
    if (!acquired_) {
        Executor::instance().acquire();  // may throw (suspended): nothing added yet
        acquired_ = true;
        parent_ = adder == nullptr ? nullptr : adder->graph;
    }
    detail::Task& task = tasks_.emplace_back();
    task.name = name;
    task.priority = priority;
    task.graph = this;
    task.index = static_cast<Index>(tasks_.size()) - 1;
    task.depth = adder == nullptr ? 0 : adder->depth + 1;
    if (task.depth < min_depth_) { min_depth_ = task.depth; }
    GraphRecorder& recorder = GraphRecorder::instance();
    if (recorder.enabled()) {
        if (recorded_as_ < 0) { recorded_as_ = recorder.new_graph(); }
        recorder.node(recorded_as_, task.index, name, priority);
    }
    return task;
}

void TaskGraph::depend(detail::Task& task, detail::Task* predecessor)
{
    if (predecessor == nullptr || predecessor == &task) { return; }
    // Recorded before the done check: the dump shows the logical dependency either way.
    if (recorded_as_ >= 0 && GraphRecorder::instance().enabled())
        GraphRecorder::instance().edge(recorded_as_, predecessor->index, task.index);
    std::lock_guard lock(predecessor->mutex);
    if (!predecessor->done) {
        predecessor->successors.push_back(&task);
        task.pending.fetch_add(1, std::memory_order_relaxed);
    } else if (predecessor->poisoned.load(std::memory_order_acquire)) {
        task.poisoned.store(true, std::memory_order_release);
    }
}

void TaskGraph::declare_read(detail::Task& task, const void* key)
{
    DataState& state = data_[key];
    depend(task, state.last_writer);  // read after write
    state.readers.push_back(&task);
}

void TaskGraph::declare_write(detail::Task& task, const void* key)
{
    DataState& state = data_[key];
    depend(task, state.last_writer);  // write after write
    for (detail::Task* reader : state.readers) { depend(task, reader); }  // write after read
    state.readers.clear();
    state.last_writer = &task;
}

void TaskGraph::submit(detail::Task& task)
{
    Executor& executor = Executor::instance();
    task.sequence = executor.next_sequence_.fetch_add(1, std::memory_order_relaxed);
    outstanding_.fetch_add(1, std::memory_order_acq_rel);
    if (task.pending.fetch_sub(1, std::memory_order_acq_rel) == 1) { executor.schedule(&task); }
}

void TaskGraph::task_finished(std::exception_ptr error) noexcept
{
    // Decrement under mutex_: the waiter reads outstanding_ under mutex_ too, so it cannot see 0,
    // return and destroy the graph before this lock is released (after which nothing here touches
    // the graph). The error is moved in, so the worker keeps no reference to a stored exception.
    bool wake_helper = false;
    {
        std::lock_guard lock(mutex_);
        if (error) {
            if (!error_) { error_ = std::move(error); }
            cancel();
        }
        if (outstanding_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            finished_cv_.notify_all();
            wake_helper = helpers_ > 0;
        }
    }
    // Touches the executor only: the graph may be gone once mutex_ is released.
    if (wake_helper) { Executor::instance().wake_helpers(); }
}

void TaskGraph::wait()
{
    const InterruptCheck check = current_interrupt_check();
    bool interrupted = false;
    if (const detail::Task* waiter = Executor::current_task(); waiter != nullptr) {
        // Called by a task on a worker: blocking would take the worker away, and with every worker
        // waiting like this the process would deadlock. Run ready tasks meanwhile instead: those at
        // least as deep as this graph's (deeper ones belong to graphs nested in it).
        const int min_depth = std::min(waiter->depth + 1, min_depth_);
        interrupted = Executor::instance().help_until_finished(*this, min_depth, waiter->graph);
    } else {
        std::unique_lock lock(mutex_);
        while (outstanding_.load(std::memory_order_acquire) != 0) {
            if (check == nullptr || interrupted) {
                finished_cv_.wait(lock, [this] { return outstanding_.load(std::memory_order_acquire) == 0; });
                break;
            }
            if (finished_cv_.wait_for(lock, std::chrono::milliseconds(20),
                                      [this] { return outstanding_.load(std::memory_order_acquire) == 0; })) {
                break;
            }
            lock.unlock();
            interrupted = check();
            lock.lock();
            if (interrupted) { cancel(); }
        }
    }
    if (acquired_) {
        acquired_ = false;
        Executor::instance().release();
    }
    std::exception_ptr error;
    {
        std::lock_guard lock(mutex_);
        std::swap(error, error_);
    }
    // Every task is done: forget the per-datum history, so tasks added from now on do not
    // inherit the poison of tasks that failed or were skipped before this wait().
    data_.clear();
    const bool was_cancelled = cancelled_.exchange(false) || (parent_ != nullptr && parent_->cancelled());
    parent_ = nullptr;
    if (error) { std::rethrow_exception(error); }
    if (interrupted || was_cancelled) { throw Cancelled("the task graph was cancelled before it finished"); }
}

}  // namespace gprat::runtime
