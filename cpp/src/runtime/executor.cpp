#include "gprat/runtime/executor.hpp"

#include <pthread.h>

#include "gprat/runtime/interrupt.hpp"

#include <algorithm>
#include <chrono>

#include "gprat/core/check.hpp"
#include "gprat/core/errors.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "gprat/runtime/thread_count.hpp"

namespace gprat::runtime {

namespace {
Executor* current_executor = nullptr;
std::once_flag executor_once;
thread_local Index this_worker = -1;                    ///< worker index of this thread, -1 elsewhere
thread_local detail::Task* running_task = nullptr;      ///< innermost task this thread runs

std::int64_t now_ns()
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}
}  // namespace

Executor& Executor::instance()
{
    std::call_once(executor_once, [] {
        current_executor = new Executor();  // never destroyed: workers may outlive static destructors
        // Hold the lifecycle lock across fork() so the child never inherits it half-taken; the
        // child then abandons the parent's executor (its threads do not exist there) for a new one.
        pthread_atfork([] { current_executor->lifecycle_mutex_.lock(); },
                       [] { current_executor->lifecycle_mutex_.unlock(); },
                       &Executor::after_fork_in_child);
    });
    return *current_executor;
}

void Executor::after_fork_in_child()
{
    // The old object holds locked mutexes and handles of threads that do not exist in the
    // child; it is leaked on purpose (destroying or joining it would be undefined).
    current_executor = new Executor();
}

Executor::~Executor()
{
    std::unique_lock lock(lifecycle_mutex_);
    if (!workers_.empty()) { stop_locked(lock); }
}

detail::Task* Executor::current_task() noexcept { return running_task; }

void Executor::refuse_inside_task(const char* what) const
{
    if (running_task != nullptr) {
        throw RuntimeStateError(std::string("gprat runtime ") + what +
                                "() was called from inside a task; it waits for the running graphs, that task's own "
                                "included, so it must be called from outside the runtime's tasks");
    }
}

void Executor::start(std::optional<Index> n_threads)
{
    refuse_inside_task("start");
    GPRAT_EXPECTS(!n_threads || *n_threads > 0, "n_threads must be a positive integer; got " << *n_threads);
    const Index wanted = n_threads ? *n_threads : default_thread_count();
    std::unique_lock lock(lifecycle_mutex_);
    suspended_ = false;
    if (static_cast<Index>(workers_.size()) == wanted) { return; }
    PendingChange pending(*this);
    if (!workers_.empty()) { stop_locked(lock); }
    start_locked(wanted);
}

void Executor::start_locked(Index n_threads)
{
    {
        std::lock_guard q(queue_mutex_);
        stopping_ = false;
    }
    workers_.reserve(static_cast<std::size_t>(n_threads));
    for (Index w = 0; w < n_threads; ++w) { workers_.emplace_back(&Executor::worker_loop, this, w); }
}

void Executor::wait_idle_locked(std::unique_lock<std::mutex>& lifecycle)
{
    idle_cv_.wait(lifecycle, [this] { return active_graphs_ == 0; });
}

void Executor::stop_locked(std::unique_lock<std::mutex>& lifecycle)
{
    wait_idle_locked(lifecycle);
    {
        std::lock_guard q(queue_mutex_);
        stopping_ = true;
    }
    queue_cv_.notify_all();
    for (std::thread& t : workers_) { t.join(); }
    workers_.clear();
}

void Executor::stop()
{
    refuse_inside_task("stop");
    std::unique_lock lock(lifecycle_mutex_);
    PendingChange pending(*this);
    if (!workers_.empty()) { stop_locked(lock); }
    suspended_ = false;
}

void Executor::suspend()
{
    refuse_inside_task("suspend");
    std::unique_lock lock(lifecycle_mutex_);
    PendingChange pending(*this);
    wait_idle_locked(lock);
    suspended_ = true;
}

void Executor::resume()
{
    std::lock_guard lock(lifecycle_mutex_);
    suspended_ = false;
}

bool Executor::running() const
{
    std::lock_guard lock(lifecycle_mutex_);
    return !workers_.empty();
}

bool Executor::suspended() const
{
    std::lock_guard lock(lifecycle_mutex_);
    return suspended_;
}

Index Executor::num_threads() const
{
    std::lock_guard lock(lifecycle_mutex_);
    return workers_.empty() ? default_thread_count() : static_cast<Index>(workers_.size());
}

void Executor::acquire()
{
    std::unique_lock lock(lifecycle_mutex_);
    if (running_task != nullptr) {
        // An inner graph of a running task belongs to work already admitted: its outer graph is
        // active, so the pool runs and is not suspended (suspend() waits for idle first). Waiting
        // for a pending start/stop/suspend here would deadlock, as that change waits for the
        // outer graph, which waits for this task.
        ++active_graphs_;
        return;
    }
    change_cv_.wait(lock, [this] { return pending_changes_ == 0; });
    if (suspended_) {
        throw RuntimeStateError("the gprat runtime is suspended; call gprat.resume() (or gprat.start()) first");
    }
    if (workers_.empty()) { start_locked(default_thread_count()); }
    ++active_graphs_;
}

void Executor::release()
{
    std::lock_guard lock(lifecycle_mutex_);
    --active_graphs_;
    if (active_graphs_ == 0) { idle_cv_.notify_all(); }
}

void Executor::schedule(detail::Task* task)
{
    bool wake_all = false;
    {
        std::lock_guard q(queue_mutex_);
        ready_.push(task);
        wake_all = blocked_helpers_ > 0;
    }
    // A helper asleep on queue_cv_ may not be allowed to run this task (it is too shallow for
    // it); notify_one could wake just that helper and leave an idle worker asleep.
    if (wake_all) { queue_cv_.notify_all(); }
    else { queue_cv_.notify_one(); }
}

void Executor::wake_helpers()
{
    { std::lock_guard q(queue_mutex_); }  // a helper between its check and its sleep holds queue_mutex_
    queue_cv_.notify_all();
}

bool Executor::help_until_finished(TaskGraph& g, int min_depth, const TaskGraph* enclosing)
{
    const InterruptCheck check = current_interrupt_check();
    {
        std::lock_guard lock(g.mutex_);
        ++g.helpers_;
    }
    const auto finished = [&g] { return g.outstanding_.load(std::memory_order_acquire) == 0; };
    const auto eligible = [this, min_depth] { return !ready_.empty() && ready_.top()->depth >= min_depth; };
    bool interrupted = false;
    std::unique_lock q(queue_mutex_);
    while (!finished()) {
        if (!interrupted && enclosing != nullptr && enclosing->cancelled()) {
            interrupted = true;  // the waiting task's own graph was cancelled: so is what it waits for
            g.cancel();
        }
        if (eligible()) {
            detail::Task* task = ready_.top();
            ready_.pop();
            q.unlock();
            execute(task, this_worker);
            q.lock();
            continue;
        }
        ++blocked_helpers_;
        // Timed, to poll the enclosing graph's cancellation and the interrupt check.
        const bool woke = queue_cv_.wait_for(q, std::chrono::milliseconds(20), [&] { return finished() || eligible(); });
        --blocked_helpers_;
        if (!woke && !interrupted && check != nullptr) {
            q.unlock();
            interrupted = check();
            if (interrupted) { g.cancel(); }
            q.lock();
        }
    }
    q.unlock();
    std::lock_guard lock(g.mutex_);  // also waits until the last task_finished() has let go of g
    --g.helpers_;
    return interrupted;
}

void Executor::worker_loop(Index worker)
{
    this_worker = worker;
    if (const WorkerStart f = worker_start_.load(std::memory_order_acquire); f != nullptr) { f(); }
    for (;;) {
        detail::Task* task = nullptr;
        {
            std::unique_lock q(queue_mutex_);
            queue_cv_.wait(q, [this] { return stopping_ || !ready_.empty(); });
            if (ready_.empty()) { return; }  // stopping, and nothing left
            task = ready_.top();
            ready_.pop();
        }
        execute(task, worker);
    }
}

void Executor::execute(detail::Task* task, Index worker)
{
    TaskGraph* graph = task->graph;
    std::exception_ptr error;
    if (!task->poisoned.load(std::memory_order_acquire) && !graph->cancelled()) {
        const bool traced = tracing();
        const std::int64_t start = traced ? now_ns() : 0;
        detail::Task* const outer = running_task;
        running_task = task;
        try {
            task->body();
        } catch (...) {
            error = std::current_exception();
        }
        running_task = outer;
        if (traced) {
            const std::int64_t end = now_ns();
            std::lock_guard t(trace_mutex_);
            trace_.push_back({task->name, worker, start, end});
        }
    }
    if (error || graph->cancelled()) { task->poisoned.store(true, std::memory_order_release); }
    task->body = nullptr;  // free captured state early
    std::vector<detail::Task*> successors;
    {
        std::lock_guard lock(task->mutex);
        task->done = true;
        successors.swap(task->successors);
    }
    const bool poisoned = task->poisoned.load(std::memory_order_acquire);
    for (detail::Task* s : successors) {
        if (poisoned) { s->poisoned.store(true, std::memory_order_release); }
        if (s->pending.fetch_sub(1, std::memory_order_acq_rel) == 1) { schedule(s); }
    }
    graph->task_finished(std::move(error));  // last touch of graph memory: the waiter may free it after
}

void Executor::execute_here(detail::Task* task) { execute(task, this_worker); }

void Executor::set_tracing(bool enabled) { tracing_.store(enabled, std::memory_order_relaxed); }

std::vector<TraceRecord> Executor::take_trace()
{
    std::vector<TraceRecord> out;
    {
        std::lock_guard t(trace_mutex_);
        out.swap(trace_);
    }
    std::sort(out.begin(), out.end(), [](const TraceRecord& a, const TraceRecord& b) { return a.start_ns < b.start_ns; });
    return out;
}

}  // namespace gprat::runtime
