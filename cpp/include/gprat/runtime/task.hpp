#pragma once
/// One node of a task graph (internal to the runtime).
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace gprat::runtime {
class TaskGraph;
}

namespace gprat::runtime::detail {

struct Task
{
    std::function<void()> body;
    const char* name = "";
    int priority = 0;               ///< higher runs first among ready tasks
    std::uint64_t sequence = 0;     ///< submission order; breaks priority ties first-in first-out
    std::int64_t index = 0;         ///< position in its graph (for the DOT dump)
    /// Nesting depth: 0 for a task added outside any task, d + 1 for one added by a task of
    /// depth d (an inner graph). Deeper ready tasks run first; see Executor.
    int depth = 0;
    TaskGraph* graph = nullptr;

    std::mutex mutex;               ///< guards done and successors against a concurrent add()
    bool done = false;
    std::vector<Task*> successors;
    /// Unfinished predecessors, plus one guard held by add() until all edges are in place.
    std::atomic<int> pending{1};
    /// Set when this task failed or was skipped: its successors are skipped too.
    std::atomic<bool> poisoned{false};
};

}  // namespace gprat::runtime::detail
