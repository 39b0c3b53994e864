#pragma once
/// Helpers shared by the runtime tests.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <random>
#include <thread>

#include "gprat/runtime/executor.hpp"
#include "gprat/runtime/task_graph.hpp"

namespace gprat_test {

/// Poll `pred` every 100 microseconds until it holds or `seconds` pass; returns the last value.
inline bool wait_until(const std::function<bool()>& pred, double seconds = 20.0)
{
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) { return pred(); }
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return true;
}

/// Seed for the random tests: GPRAT_TEST_SEED if set, else a fixed default (printed, so a
/// failure can be reproduced).
inline std::uint64_t test_seed(std::uint64_t fallback)
{
    const char* env = std::getenv("GPRAT_TEST_SEED");
    const std::uint64_t seed = (env != nullptr && *env != '\0') ? std::strtoull(env, nullptr, 10) : fallback;
    std::cout << "    seed " << seed << " (set GPRAT_TEST_SEED to change)" << std::endl;
    return seed;
}

/// A task body that blocks until `release` is set or the graph is cancelled (so a cancelled or
/// interrupted graph never deadlocks on it), with a safety timeout.
inline void gate_body(const std::atomic<bool>& release, const gprat::runtime::TaskGraph& g,
                      std::atomic<bool>* started = nullptr, double timeout_s = 30.0)
{
    if (started != nullptr) { started->store(true); }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (!release.load() && !g.cancelled() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
}

/// Runs fn on its own thread and waits at most `seconds` for it. A deadlock cannot be undone in
/// the process (its threads stay blocked), so on timeout this reports the failure the way the
/// harness's watchdog does (summary line last) and exits with status 3 at once.
inline void finish_within(double seconds, const char* what, std::function<void()> fn)
{
    struct State
    {
        std::mutex m;
        std::condition_variable cv;
        bool done = false;
    };
    auto state = std::make_shared<State>();
    std::thread worker([state, fn = std::move(fn)] {
        fn();
        std::lock_guard lock(state->m);
        state->done = true;
        state->cv.notify_all();
    });
    std::unique_lock lock(state->m);
    if (!state->cv.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return state->done; })) {
        std::printf("    FAILED: %s did not finish within %.0f s (deadlock)\nTIMEOUT in %s\n0 passed, 1 failed\n", what,
                    seconds, what);
        std::fflush(nullptr);
        std::_Exit(3);
    }
    lock.unlock();
    worker.join();
}

}  // namespace gprat_test
