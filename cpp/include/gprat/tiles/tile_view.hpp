#pragma once
/// Non-owning view of one column-major tile: element (i, j) lives at data[i + j * ld].
#include "gprat/core/types.hpp"

namespace gprat::tiles {

template <typename T>
class TileView
{
  public:
    TileView() = default;
    TileView(T* data, Index rows, Index cols, Index ld) : data_(data), rows_(rows), cols_(cols), ld_(ld) {}

    T* data() const noexcept { return data_; }
    Index rows() const noexcept { return rows_; }
    Index cols() const noexcept { return cols_; }
    Index ld() const noexcept { return ld_; }
    T& operator()(Index i, Index j) const noexcept { return data_[i + j * ld_]; }

    /// The rows x cols sub-block whose top-left element is (row0, col0); same storage, same ld.
    TileView block(Index row0, Index col0, Index rows, Index cols) const noexcept
    {
        return TileView(data_ + row0 + col0 * ld_, rows, cols, ld_);
    }

  private:
    T* data_ = nullptr;
    Index rows_ = 0, cols_ = 0, ld_ = 1;
};

}  // namespace gprat::tiles
