/// Runtime stress test, meant for ThreadSanitizer: several threads build and wait on many small
/// graphs (chains, fans, diamonds, tiny one-task graphs, some with failing or self-cancelling
/// tasks) while another thread cycles start/stop/suspend/resume and another toggles tracing.
/// Time-bounded: each phase runs for GPRAT_STRESS_SECONDS (default 2.5) seconds of wall time.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "gprat/core/errors.hpp"
#include "gprat/runtime/access.hpp"
#include "gprat/runtime/executor.hpp"
#include "gprat/runtime/interrupt.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "runtime_helpers.hpp"

using gprat::runtime::Executor;
using gprat::runtime::Read;
using gprat::runtime::TaskGraph;
using gprat::runtime::Write;
using Clock = std::chrono::steady_clock;

namespace {

double phase_seconds()
{
    const char* env = std::getenv("GPRAT_STRESS_SECONDS");
    if (env != nullptr && *env != '\0' && std::atof(env) > 0) return std::atof(env);
    return 2.5;
}

struct StressError : std::runtime_error
{
    using std::runtime_error::runtime_error;
};

struct Stats
{
    std::atomic<long> graphs{0}, errors{0}, cancels{0}, refused{0}, tasks{0};
};

bool never_interrupt() { return false; }

/// Adds the first task of a graph, retrying while the executor is suspended (add() refuses
/// work with RuntimeStateError then; nothing has been added when it throws).
template <typename... A>
void add_first(TaskGraph& g, Stats& stats, const Clock::time_point deadline, A&&... a)
{
    for (;;) {
        try {
            g.add(std::forward<A>(a)...);
            return;
        } catch (const gprat::RuntimeStateError&) {
            stats.refused.fetch_add(1);
            CHECK_EQ(g.size(), 0);
            if (Clock::now() > deadline + std::chrono::seconds(30)) {
                CHECK_MSG(false, "executor stayed suspended");
                throw;
            }
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    }
}

/// Chain of `len` increments of one counter; the task at `fail_at` (if >= 0) throws, so the
/// counter must stop exactly there.
void chain_graph(std::mt19937_64& rng, Stats& stats, Clock::time_point deadline)
{
    const int len = std::uniform_int_distribution<int>(1, 40)(rng);
    const int fail_at = std::uniform_int_distribution<int>(0, 4)(rng) == 0
                            ? std::uniform_int_distribution<int>(0, len - 1)(rng)
                            : -1;
    long counter = 0;
    TaskGraph g;
    for (int i = 0; i < len; ++i) {
        auto body = [i, fail_at, &stats](long* c) {
            CHECK_EQ(*c, static_cast<long>(i));
            if (i == fail_at) throw StressError("chain failure");
            ++*c;
            stats.tasks.fetch_add(1, std::memory_order_relaxed);
        };
        if (i == 0) {
            add_first(g, stats, deadline, "chain", 0, body, Write<long*>{&counter});
        } else {
            g.add("chain", std::uniform_int_distribution<int>(-2, 2)(rng), body, Write<long*>{&counter});
        }
    }
    try {
        g.wait();
        CHECK_EQ(fail_at, -1);
        CHECK_EQ(counter, static_cast<long>(len));
    } catch (const StressError&) {
        stats.errors.fetch_add(1);
        CHECK_GE(fail_at, 0);
        CHECK_EQ(counter, static_cast<long>(fail_at));
    }
}

/// One writer, `k` readers each writing its own slot, one join summing the slots; optionally
/// one reader throws (then the join must not run).
void fan_graph(std::mt19937_64& rng, Stats& stats, Clock::time_point deadline)
{
    const int k = std::uniform_int_distribution<int>(1, 24)(rng);
    const int fail_at = std::uniform_int_distribution<int>(0, 5)(rng) == 0 ? std::uniform_int_distribution<int>(0, k - 1)(rng) : -1;
    long src = 0, sum = -1;
    std::vector<long> slots(static_cast<std::size_t>(k), 0);
    bool joined = false;
    TaskGraph g;
    add_first(g, stats, deadline, "fan-src", 1, [](long* s) { *s = 3; }, Write<long*>{&src});
    for (int i = 0; i < k; ++i)
        g.add("fan", 0,
              [i, fail_at](const long* s, long* out) {
                  if (i == fail_at) throw StressError("fan failure");
                  *out = *s * (i + 1);
              },
              Read<const long*>{&src}, Write<long*>{&slots[i]});
    // Gather every slot into one accumulator, then a join; both depend on every reader.
    long gathered = 0;
    for (int i = 0; i < k; ++i)
        g.add("gather", 0, [](long* acc, const long* v) { *acc += *v; }, Write<long*>{&gathered},
              Read<const long*>{&slots[i]});
    g.add("join", 0, [&joined, &sum](const long* acc) { joined = true; sum = *acc; }, Read<const long*>{&gathered});
    try {
        g.wait();
        CHECK_EQ(fail_at, -1);
        const long expected = 3L * k * (k + 1) / 2;
        CHECK_EQ(gathered, expected);
        CHECK_EQ(sum, expected);
        CHECK(joined);
    } catch (const StressError&) {
        stats.errors.fetch_add(1);
        CHECK_GE(fail_at, 0);
        CHECK(!joined);
    }
}

/// Repeated diamonds a -> {b, c} -> d over four data; a task may cancel the graph from inside.
void diamond_graph(std::mt19937_64& rng, Stats& stats, Clock::time_point deadline)
{
    const int reps = std::uniform_int_distribution<int>(1, 10)(rng);
    const bool self_cancel = std::uniform_int_distribution<int>(0, 6)(rng) == 0;
    long a = 0, b = 0, c = 0, d = 0;
    TaskGraph g;
    for (int r = 0; r < reps; ++r) {
        auto top = [&g, r, reps, self_cancel](long* x, const long* dd) {
            *x = *dd + 1;
            if (self_cancel && r == reps / 2) g.cancel();
        };
        if (r == 0) {
            add_first(g, stats, deadline, "a", 2, top, Write<long*>{&a}, Read<const long*>{&d});
        } else {
            g.add("a", 2, top, Write<long*>{&a}, Read<const long*>{&d});
        }
        g.add("b", 1, [](const long* x, long* y) { *y = *x * 2; }, Read<const long*>{&a}, Write<long*>{&b});
        g.add("c", 1, [](const long* x, long* y) { *y = *x * 3; }, Read<const long*>{&a}, Write<long*>{&c});
        g.add("d", 0, [](const long* y, const long* z, long* w) { *w = *y + *z; }, Read<const long*>{&b},
              Read<const long*>{&c}, Write<long*>{&d});
    }
    // d_{r+1} = 5 (d_r + 1)
    long expected = 0;
    for (int r = 0; r < reps; ++r) expected = 5 * (expected + 1);
    try {
        const bool poll = std::uniform_int_distribution<int>(0, 1)(rng) == 0;
        if (poll) {
            gprat::runtime::ScopedInterruptCheck check(&never_interrupt);
            g.wait();
        } else {
            g.wait();
        }
        CHECK(!self_cancel);
        CHECK_EQ(d, expected);
    } catch (const gprat::Cancelled&) {
        stats.cancels.fetch_add(1);
        CHECK(self_cancel);
    }
}

/// A one-task graph, waited on and destroyed at once (races the end of task_finished()).
void tiny_graph(Stats& stats, Clock::time_point deadline)
{
    long x = 0;
    {
        TaskGraph g;
        add_first(g, stats, deadline, "tiny", 0, [](long* p) { *p = 1; }, Write<long*>{&x});
        g.wait();
    }
    CHECK_EQ(x, 1);
}

/// Outer tasks that each build and wait on an inner graph (a chain, sometimes failing): the
/// waiting workers help, while other threads start, stop and suspend the executor.
void nested_graph(std::mt19937_64& rng, Stats& stats, Clock::time_point deadline)
{
    const int outer_n = std::uniform_int_distribution<int>(1, 6)(rng);
    const int fail_in = std::uniform_int_distribution<int>(0, 3)(rng) == 0
                            ? std::uniform_int_distribution<int>(0, outer_n - 1)(rng)
                            : -1;
    std::vector<long> got(static_cast<std::size_t>(outer_n), -1);
    TaskGraph g;
    for (int t = 0; t < outer_n; ++t) {
        auto body = [t, fail_in](long* out) {
            long c = 0;
            TaskGraph inner;
            for (int i = 0; i < 8; ++i)
                inner.add("inner", i % 2, [i, t, fail_in](long* p) {
                    if (t == fail_in && i == 5) throw StressError("inner");
                    ++*p;
                }, Write<long*>{&c});
            inner.wait();
            *out = c;
        };
        if (t == 0) { add_first(g, stats, deadline, "outer", 0, body, Write<long*>{&got[0]}); }
        else { g.add("outer", 0, body, Write<long*>{&got[t]}); }
    }
    bool threw = false;
    try {
        g.wait();
    } catch (const StressError&) {
        threw = true;
        stats.errors.fetch_add(1, std::memory_order_relaxed);
    }
    CHECK_EQ(threw, fail_in >= 0);
    if (!threw)
        for (long v : got) CHECK_EQ(v, 8);
}

/// `pause_us` > 0: sleep up to that long between batches, so that stop()/suspend()/start(n),
/// which wait for every graph to finish, find idle moments (see the note in run_stress).
void producer(int id, Stats& stats, Clock::time_point deadline, int pause_us)
{
    std::mt19937_64 rng(1000 + id);
    while (Clock::now() < deadline) {
        switch (std::uniform_int_distribution<int>(0, 4)(rng)) {
            case 0: chain_graph(rng, stats, deadline); break;
            case 4: nested_graph(rng, stats, deadline); break;
            case 1: fan_graph(rng, stats, deadline); break;
            case 2: diamond_graph(rng, stats, deadline); break;
            default:
                for (int i = 0; i < 10; ++i) tiny_graph(stats, deadline);
                break;
        }
        stats.graphs.fetch_add(1, std::memory_order_relaxed);
        if (gprat_test::failures_in_current_test() > 0) return;
        if (pause_us > 0)
            std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, pause_us)(rng)));
    }
}

struct LifecycleCounts
{
    long starts = 0, stops = 0, suspends = 0;
    double slowest_call_s = 0;  ///< longest single start/stop/suspend call
};

void lifecycle_cycler(LifecycleCounts& counts, Clock::time_point deadline)
{
    std::mt19937_64 rng(4242);
    Executor& ex = Executor::instance();
    while (Clock::now() < deadline) {
        const auto t0 = Clock::now();
        switch (std::uniform_int_distribution<int>(0, 2)(rng)) {
            case 0: {
                const gprat::Index n = std::uniform_int_distribution<int>(1, 4)(rng);
                ex.start(n);
                ++counts.starts;
                break;
            }
            case 1:
                ex.stop();
                ++counts.stops;
                break;
            default:
                ex.suspend();
                ++counts.suspends;
                CHECK(ex.suspended());
                std::this_thread::sleep_for(std::chrono::microseconds(500));
                ex.resume();
                break;
        }
        counts.slowest_call_s = std::max(counts.slowest_call_s, std::chrono::duration<double>(Clock::now() - t0).count());
        (void)ex.num_threads();
        (void)ex.running();
        std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 2000)(rng)));
    }
    ex.resume();
}

void trace_toggler(Clock::time_point deadline)
{
    Executor& ex = Executor::instance();
    bool on = false;
    while (Clock::now() < deadline) {
        on = !on;
        ex.set_tracing(on);
        const auto records = ex.take_trace();
        for (std::size_t i = 1; i < records.size(); ++i) CHECK_LE(records[i - 1].start_ns, records[i].start_ns);
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }
    ex.set_tracing(false);
    (void)ex.take_trace();
}

LifecycleCounts run_stress(int producers, bool with_lifecycle, int pause_us)
{
    Stats stats;
    LifecycleCounts counts;
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(phase_seconds()));
    std::vector<std::thread> threads;
    for (int i = 0; i < producers; ++i) threads.emplace_back(producer, i, std::ref(stats), deadline, pause_us);
    if (with_lifecycle) threads.emplace_back(lifecycle_cycler, std::ref(counts), deadline);
    threads.emplace_back(trace_toggler, deadline);
    for (std::thread& t : threads) t.join();
    std::cout << "    " << stats.graphs << " graph batches, " << stats.tasks << " chain tasks, " << stats.errors
              << " task errors, " << stats.cancels << " cancels, " << stats.refused << " refusals while suspended";
    if (with_lifecycle)
        std::cout << "; lifecycle: " << counts.starts << " starts, " << counts.stops << " stops, " << counts.suspends
                  << " suspends";
    std::cout << std::endl;
    CHECK_GE(stats.graphs.load(), static_cast<long>(producers));
    if (with_lifecycle) CHECK_GE(counts.starts + counts.stops + counts.suspends, 10L);
    CHECK(!Executor::instance().suspended());
    return counts;
}

}  // namespace

TEST(concurrent_graphs_from_many_threads)
{
    Executor::instance().start(2);
    run_stress(4, false, 0);
}

TEST(concurrent_graphs_with_lifecycle_cycles)
{
    run_stress(3, true, 1000);
    // The executor is still usable afterwards.
    Executor::instance().start(2);
    long x = 0;
    TaskGraph g;
    g.add("after", 0, [](long* p) { *p = 1; }, Write<long*>{&x});
    g.wait();
    CHECK_EQ(x, 1);
}

TEST(lifecycle_changes_are_not_starved_by_producers_that_never_pause)
{
    // stop(), suspend() and start(n) wait until no graph is in flight. Without the pending-
    // change gate in Executor::acquire(), producers submitting back to back keep a graph in
    // flight almost always and each lifecycle call can wait for seconds or forever.
    Executor::instance().start(2);
    const LifecycleCounts counts = run_stress(4, true, 0);
    std::cout << "    slowest lifecycle call " << counts.slowest_call_s << " s" << std::endl;
    CHECK_LT(counts.slowest_call_s, 1.0);
    CHECK_GE(counts.starts + counts.stops + counts.suspends, 50L);
}

int main(int argc, char** argv) { return gprat_test::run_all(argc, argv); }
