// The program's version and the commit it was built from, for --version, run.json and the
// benchmarks' JSON. Defined in a source that cmake/version.cmake writes at every build.
#pragma once

namespace rbm {

const char* version();  // the project version, "0.1.0"
// 12 hex digits of HEAD when built, "-dirty" appended when tracked files differed from it;
// "unknown" outside a git checkout.
const char* git_commit();

}  // namespace rbm
