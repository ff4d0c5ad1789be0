// Text-overlap metrics of the TOFU and MUSE evaluations: ROUGE-L as Google's `rouge_score` computes
// it, with its tokenizer and NLTK's Porter stemmer. Pure string functions: no model, no tokenizer
// of lethe's, no I/O. docs/metrics.md gives the rules and their references.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace lethe::eval {

// rouge_score's Score: precision = LCS/|prediction|, recall = LCS/|target|, fmeasure = their
// harmonic mean (all 0 when either side has no token).
struct RougeScore {
  double precision = 0;
  double recall = 0;
  double fmeasure = 0;
};

// NLTK's PorterStemmer().stem(word) in its default mode NLTK_EXTENSIONS (irregular-forms table,
// Martin Porter's extensions and NLTK's own). `word` is lower-cased (ASCII) first; words of one or
// two letters come back unchanged.
std::string porter_stem(std::string_view word);

// rouge_score's DefaultTokenizer(use_stemmer=stem) on UTF-8 text: Python's str.lower(), every
// character outside [a-z0-9] a separator, then (stem) porter_stem on tokens longer than 3.
std::vector<std::string> rouge_tokenize(std::string_view text, bool stem);

// rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stem).score(target, prediction)["rougeL"].
// TOFU reports the recall with stem = true; MUSE the fmeasure with stem = false.
RougeScore rouge_l(std::string_view target, std::string_view prediction, bool stem);

// The same on tokens already made by rouge_tokenize (to score many predictions against one target).
RougeScore rouge_l_tokens(const std::vector<std::string>& target,
                          const std::vector<std::string>& prediction);

}  // namespace lethe::eval
