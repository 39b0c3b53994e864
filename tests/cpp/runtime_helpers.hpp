#pragma once
/// Helpers shared by the runtime tests.
#include <chrono>
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

}  // namespace gprat_test
