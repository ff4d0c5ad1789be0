// Loading a trained classifier and classifying texts over the ranks of a run.
#include "eval/classifier.h"

#include "eval/parallel.h"
#include "trainers/classifier.h"

namespace lethe::eval {

Classifier load_classifier(const std::string& dir, Device device) {
  Classifier c;
  c.model = models::SequenceClassifier::load(dir, device, /*trainable=*/false);
  c.tokenizer = tokenizer::load_tokenizer(dir);
  return c;
}

std::vector<std::vector<double>> classify(const models::SequenceClassifier& model,
                                          const tokenizer::Tokenizer& tok,
                                          const std::vector<std::string>& texts, int64_t batch_size,
                                          int64_t max_length) {
  const Block b = my_block(texts.size());
  return gather_items(
      trainers::class_probabilities(model, tok, block_of(texts, b), batch_size, max_length));
}

}  // namespace lethe::eval
