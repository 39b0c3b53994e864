#include "gprat/runtime/task_graph.hpp"

#include <algorithm>
#include <chrono>
#include <iterator>
#include <sstream>
#include <string>

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

namespace {
std::string show_range(std::uintptr_t begin, std::uintptr_t end)
{
    std::ostringstream os;
    os << "[0x" << std::hex << begin << ", 0x" << end << ")";
    return os.str();
}

/// Two regions that overlap without being the same one, or nullptr if they may coexist.
const char* conflict(std::uintptr_t b0, std::uintptr_t e0, std::uintptr_t b1, std::uintptr_t e1)
{
    if (b0 == b1) { return e0 == e1 ? nullptr : "a different extent"; }
    return (b0 < e1 && b1 < e0) ? "a different start" : nullptr;
}

[[noreturn]] void refuse(const char* name, const detail::Access& a, std::uintptr_t begin, std::uintptr_t end,
                         const char* other, const char* why)
{
    std::ostringstream os;
    os << "task '" << name << "' accesses " << show_range(a.begin, a.end) << " which overlaps "
       << show_range(begin, end) << " declared by task '" << other << "' with " << why
       << "; dependencies are tracked per whole region: declare the same region or disjoint ones";
    throw InvalidArgument(os.str());
}
}  // namespace

void TaskGraph::check_accesses(const char* name, const detail::Access* accesses, DataState** states,
                               std::size_t n) const
{
    for (std::size_t i = 0; i < n; ++i) {
        const detail::Access& a = accesses[i];
        states[i] = nullptr;
        if (const auto known = data_.find(a.begin); known != data_.end()) {
            if (known->second.end != a.end)
                refuse(name, a, known->first, known->second.end, known->second.declared_by, "a different extent");
            states[i] = const_cast<DataState*>(&known->second);  // declare() updates it
        } else {
            // A new start. The known regions are disjoint, so two lookups suffice: the last region
            // starting before a.begin must end by a.begin, and the first one starting after it
            // must start at or after a.end (any later one starts later still).
            const auto next = regions_.upper_bound(a.begin);
            if (next != regions_.begin()) {
                const auto prev = std::prev(next);
                if (prev->second->end > a.begin)
                    refuse(name, a, prev->first, prev->second->end, prev->second->declared_by, "a different start");
            }
            if (next != regions_.end() && next->first < a.end)
                refuse(name, a, next->first, next->second->end, next->second->declared_by, "a different start");
        }
        for (std::size_t j = 0; j < i; ++j) {  // this task's own accesses (few)
            if (const char* why = conflict(a.begin, a.end, accesses[j].begin, accesses[j].end))
                refuse(name, a, accesses[j].begin, accesses[j].end, name, why);
        }
    }
}

void TaskGraph::declare(detail::Task& task, const detail::Access& access, DataState* state)
{
    if (state == nullptr) {  // new, unless an earlier access of this task registered it
        const auto [it, inserted] = data_.try_emplace(access.begin);
        state = &it->second;
        if (inserted) {
            state->end = access.end;
            state->declared_by = task.name;
            regions_.emplace(access.begin, state);
        }
    }
    if (!access.write) {
        depend(task, state->last_writer);  // read after write
        state->readers.push_back(&task);
        return;
    }
    depend(task, state->last_writer);  // write after write
    for (detail::Task* reader : state->readers) { depend(task, reader); }  // write after read
    state->readers.clear();
    state->last_writer = &task;
}

void TaskGraph::submit(detail::Task& task)
{
    Executor& executor = Executor::instance();
    task.sequence = executor.next_sequence_.fetch_add(1, std::memory_order_relaxed);
    outstanding_.fetch_add(1, std::memory_order_acq_rel);
    if (task.pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        // Schedule::caller: every earlier task of the graph ran inside its add(), so a new task
        // is ready at once and runs here; adding order is a valid order of execution.
        if (schedule_ == Schedule::caller) { executor.execute_here(&task); }
        else { executor.schedule(&task); }
    }
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
    regions_.clear();
    const bool was_cancelled = cancelled_.exchange(false) || (parent_ != nullptr && parent_->cancelled());
    parent_ = nullptr;
    if (error) { std::rethrow_exception(error); }
    if (interrupted || was_cancelled) { throw Cancelled("the task graph was cancelled before it finished"); }
}

}  // namespace gprat::runtime
