#pragma once
/// StreamGraph: the runtime's sequential task flow (runtime/task_graph.hpp: a task names the
/// tiles it reads and writes; it depends on each tile's last writer, and a writer also on the
/// readers since) with CUDA streams as the workers and CUDA events as the dependency edges.
/// add() enqueues the task's kernels at once on its stream, after cudaStreamWaitEvent on the
/// events of the tasks it depends on that ran on other streams (same-stream order is free), then
/// records one event for it. Nothing waits on the host until wait(): the GPU resolves the graph.
/// Stream choice: a task runs on the stream of the first tile it writes (hash of (matrix, i, j)),
/// so that every update of a tile is one in-order chain and only cross-tile edges cost events.
/// Why not the std::thread runtime itself: enqueuing is asynchronous (microseconds per task),
/// so host workers would only add contention on the cuBLAS handles; the dependency rule is the
/// same one.
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <unordered_map>
#include <vector>

#include "gprat/core/types.hpp"
#include "gprat/cuda/check.hpp"

namespace gprat::cuda {

/// One tile of one matrix: what a task reads or writes.
struct TileKey
{
    int matrix;
    Index i, j;
    std::uint64_t packed() const
    {
        return (static_cast<std::uint64_t>(matrix) << 56) ^ (static_cast<std::uint64_t>(i) << 28) ^
               static_cast<std::uint64_t>(j);
    }
};

class StreamGraph
{
  public:
    /// @param streams the workers (owned by the caller, all on the current device).
    explicit StreamGraph(const std::vector<cudaStream_t>& streams) : streams_(streams) {}
    StreamGraph(const StreamGraph&) = delete;
    StreamGraph& operator=(const StreamGraph&) = delete;
    ~StreamGraph()
    {
        for (cudaEvent_t e : events_) cudaEventDestroy(e);  // after a failed wait too: no throw here
    }

    /// The stream a task writing `w` runs on.
    int stream_of(TileKey w) const
    {
        const std::uint64_t h = static_cast<std::uint64_t>(w.matrix) * 7919u + static_cast<std::uint64_t>(w.i) * 31u +
                                static_cast<std::uint64_t>(w.j);
        return static_cast<int>(h % streams_.size());
    }

    /// Enqueue launch(stream index) after the tasks it depends on. `writes` must not be empty.
    template <typename Launch>
    void add(std::initializer_list<TileKey> reads, std::initializer_list<TileKey> writes, Launch&& launch)
    {
        const int s = stream_of(*writes.begin());
        cudaStream_t st = streams_[static_cast<std::size_t>(s)];
        for (const TileKey& r : reads) wait_for(st, s, state(r).writer);
        for (const TileKey& w : writes) {
            State& t = state(w);
            wait_for(st, s, t.writer);
            // Events of one stream complete in order: waiting for the latest reader on each
            // stream covers the earlier ones there.
            latest_.assign(streams_.size(), nullptr);
            for (const Edge& e : t.readers) latest_[static_cast<std::size_t>(e.stream)] = e.event;
            for (std::size_t r = 0; r < latest_.size(); ++r)
                wait_for(st, s, Edge{latest_[r], static_cast<int>(r)});
        }
        launch(s);
        GPRAT_CHECK_LAUNCH();
        const Edge done{next_event(), s};
        GPRAT_CHECK_CUDA(cudaEventRecord(done.event, st));
        for (const TileKey& r : reads) state(r).readers.push_back(done);
        for (const TileKey& w : writes) {
            State& t = state(w);
            t.writer = done;
            t.readers.clear();
        }
    }

    /// Make every stream wait for everything enqueued so far on all of them (a device-side
    /// barrier, no host wait); `timing`, when not null, is recorded at the join (profiling).
    void barrier(cudaEvent_t timing = nullptr)
    {
        cudaEvent_t joined = next_event();
        for (std::size_t s = 1; s < streams_.size(); ++s) {
            cudaEvent_t e = next_event();
            GPRAT_CHECK_CUDA(cudaEventRecord(e, streams_[s]));
            GPRAT_CHECK_CUDA(cudaStreamWaitEvent(streams_[0], e, 0));
        }
        GPRAT_CHECK_CUDA(cudaEventRecord(joined, streams_[0]));
        if (timing != nullptr) GPRAT_CHECK_CUDA(cudaEventRecord(timing, streams_[0]));
        for (std::size_t s = 1; s < streams_.size(); ++s) GPRAT_CHECK_CUDA(cudaStreamWaitEvent(streams_[s], joined, 0));
        tiles_.clear();  // everything before is now ordered before every stream
    }

    /// Wait on the host for every stream (the one synchronization of a call); rethrows the first
    /// asynchronous error. The tile states are cleared: a next graph starts from scratch.
    void wait()
    {
        tiles_.clear();
        used_ = 0;  // every recorded event has completed: the pool may be re-recorded
        for (cudaStream_t st : streams_) GPRAT_CHECK_CUDA(cudaStreamSynchronize(st));
    }

  private:
    struct Edge
    {
        cudaEvent_t event = nullptr;
        int stream = -1;
    };
    struct State
    {
        Edge writer;
        std::vector<Edge> readers;
    };

    State& state(TileKey k) { return tiles_[k.packed()]; }

    void wait_for(cudaStream_t st, int s, const Edge& e)
    {
        if (e.event != nullptr && e.stream != s) GPRAT_CHECK_CUDA(cudaStreamWaitEvent(st, e.event, 0));
    }

    /// One event per task from a pool: an event re-recorded while a wait on its earlier record
    /// is still to be enqueued would move the edge, so events are reused only after wait().
    cudaEvent_t next_event()
    {
        if (used_ < events_.size()) return events_[used_++];
        cudaEvent_t e = nullptr;
        GPRAT_CHECK_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
        events_.push_back(e);
        ++used_;
        return e;
    }

    const std::vector<cudaStream_t>& streams_;
    std::unordered_map<std::uint64_t, State> tiles_;
    std::vector<cudaEvent_t> events_;
    std::size_t used_ = 0;
    std::vector<cudaEvent_t> latest_;  ///< scratch of add(): the last reader event per stream
};

}  // namespace gprat::cuda
