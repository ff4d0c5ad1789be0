// Every built-in unlearning method, one line each: LETHE_METHOD(name) names the spec that
// methods/<name>.cpp defines as `MethodSpec name_method()` (docs/architecture.md, "Adding a
// method"). The order is the order of `--keys` and of method.name's choices.
LETHE_METHOD(ga)
LETHE_METHOD(graddiff)
LETHE_METHOD(ga_mismatch_kl)
LETHE_METHOD(npo)
LETHE_METHOD(simnpo)
LETHE_METHOD(mollm)
LETHE_METHOD(ngdiff)
