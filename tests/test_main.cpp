// GoogleTest entry point shared by every test binary.
#include <gtest/gtest.h>
#include <torch/torch.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  torch::set_num_threads(1);  // ctest runs two tests at a time on two cores
  return RUN_ALL_TESTS();
}
