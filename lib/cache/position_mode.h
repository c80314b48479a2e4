#pragma once
// How a budgeted cache places its keys (methods §2.1); a LibTorch-free header so that the
// eval and sweep-planning headers stay light.
namespace kvscope {

enum class PositionMode {
  Original,  // keys rotated once, at their original positions
  InCache,   // keys kept before RoPE and re-rotated each step at their index in the cache
};

}  // namespace kvscope
