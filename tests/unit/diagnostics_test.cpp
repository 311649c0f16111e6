#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

#include "vmm/diagnostics.h"

using namespace ember;

TEST_CASE("diagnostics: sources are described in order until unregistered") {
    const auto before = diagnostics::describe_all();
    auto a = diagnostics::add_source([] { return std::string("source A"); });
    {
        auto b = diagnostics::add_source([] { return std::string("source B\n"); });
        const auto all = diagnostics::describe_all();
        CHECK(all == before + "source A\nsource B\n");
    }
    CHECK(diagnostics::describe_all() == before + "source A\n");
    // Moving keeps one registration; the moved-from one unregisters nothing.
    auto c = std::move(a);
    CHECK(diagnostics::describe_all() == before + "source A\n");
    c = {};
    CHECK(diagnostics::describe_all() == before);
}

TEST_CASE("diagnostics: a source that throws is reported, the others still run") {
    auto bad = diagnostics::add_source([]() -> std::string { throw std::runtime_error("gone"); });
    auto good = diagnostics::add_source([] { return std::string("fine"); });
    const auto all = diagnostics::describe_all();
    CHECK(all.find("(state not available: gone)") != std::string::npos);
    CHECK(all.find("fine\n") != std::string::npos);
}
