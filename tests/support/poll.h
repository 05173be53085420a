// Waiting for something a real process or a real network does, in integration tests.
#pragma once

#include <chrono>
#include <thread>

namespace meshid::testing {

// Polls `condition` every 20 ms until it holds or `timeout` passes; returns the last answer.
// The timeout only bounds a hung test: nothing asserts on how long the wait took. Unit tests
// drive their state machines directly instead.
template <typename Condition>
bool Eventually(Condition condition, std::chrono::seconds timeout = std::chrono::seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return condition();
}

}  // namespace meshid::testing
