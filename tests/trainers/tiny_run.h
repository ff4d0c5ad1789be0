// The recipe keys of a short run on the tiny fixture model (tests/trainers/fixtures/methods): AdamW
// at a constant 0.01, two samples per micro-batch, no accumulation; tests add the method and steps.
#pragma once

#include <string>
#include <vector>

namespace lethe::trainers {

inline std::vector<std::string> tiny_run_sets(const std::string& out) {
  const std::string dir = "tests/trainers/fixtures/methods";
  return {"model.path=" + dir + "/model",
          "data.forget=" + dir + "/forget.jsonl",
          "data.retain=" + dir + "/retain.jsonl",
          "data.format=tokenized",
          "trainer.batch_size=2",
          "trainer.grad_accum=1",
          "trainer.lr=0.01",
          "trainer.scheduler=constant",
          "trainer.threads=2",
          "output.dir=" + out};
}

}  // namespace lethe::trainers
