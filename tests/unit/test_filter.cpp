#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "filter/filter.h"
#include "support/test_support.h"

namespace lookalike::filter {
namespace {

using lookalike::testing::contains;
using lookalike::testing::error_from;

catalog::Product product(const std::string& id, const std::string& category, const std::string& brand,
                         double price, std::int64_t stock, double rating,
                         std::map<std::string, std::string> attributes = {}) {
  catalog::Product p;
  p.id = id;
  p.category = category;
  p.brand = brand;
  p.price = price;
  p.stock = stock;
  p.rating = rating;
  p.attributes = std::move(attributes);
  return p;
}

std::string parse_error(const std::string& text, const ParseLimits& limits = {}) {
  auto e = error_from([&] { Filter::parse(text, limits); });
  if (!e) return "(parsed)";
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
  return e->what();
}

TEST(FilterParse, TheBriefsExampleMatchesWhatItSays) {
  auto f = Filter::parse(R"(category = "Sneaker" AND price < 50 AND NOT attributes.color IN ("red","pink"))");
  EXPECT_TRUE(f.matches(product("a", "Sneaker", "X", 49.99, 1, 4, {{"color", "blue"}})));
  EXPECT_TRUE(f.matches(product("b", "sneaker", "X", 10, 1, 4)));  // no colour: not red, not pink
  EXPECT_FALSE(f.matches(product("c", "Sneaker", "X", 50, 1, 4, {{"color", "blue"}})));
  EXPECT_FALSE(f.matches(product("d", "Sneaker", "X", 20, 1, 4, {{"color", "Pink"}})));
  EXPECT_FALSE(f.matches(product("e", "Sandal", "X", 20, 1, 4, {{"color", "blue"}})));
}

TEST(FilterParse, PrecedenceIsNotThenAndThenOr) {
  auto f = Filter::parse("brand = 'A' OR brand = 'B' AND price > 10");
  EXPECT_TRUE(f.matches(product("1", "c", "A", 1, 0, 0)));   // A alone is enough
  EXPECT_FALSE(f.matches(product("2", "c", "B", 1, 0, 0)));  // B needs the price
  auto g = Filter::parse("(brand = 'A' OR brand = 'B') AND price > 10");
  EXPECT_FALSE(g.matches(product("3", "c", "A", 1, 0, 0)));
  EXPECT_EQ(f.to_string(), "brand = \"A\" OR (brand = \"B\" AND price > 10)");
  EXPECT_EQ(g.to_string(), "(brand = \"A\" OR brand = \"B\") AND price > 10");
}

TEST(FilterParse, KeywordsAndTextAreCaseInsensitiveButStringsKeepTheirSpelling) {
  auto f = Filter::parse("Category in ('SNEAKER', \"Sandal\") and not In_Stock");
  EXPECT_TRUE(f.matches(product("1", "sneaker", "b", 1, 0, 0)));
  EXPECT_FALSE(f.matches(product("2", "sneaker", "b", 1, 3, 0)));
  EXPECT_EQ(f.to_string(), "category IN (\"SNEAKER\", \"Sandal\") AND NOT in_stock = TRUE");
}

TEST(FilterParse, CanonicalFormParsesToTheSameFilter) {
  const std::string text =
      R"(NOT (price >= 10.5 AND price < 1e3) OR attributes.Size NOT IN ("4\"2", 'x\\y') OR in_stock = FALSE)";
  auto f = Filter::parse(text);
  EXPECT_EQ(Filter::parse(f.to_string()).to_string(), f.to_string());
  EXPECT_TRUE(f.matches(product("1", "c", "b", 5, 3, 0, {{"size", "4\"2"}})));
  EXPECT_FALSE(f.matches(product("2", "c", "b", 50, 3, 0, {{"size", "4\"2"}})));
  EXPECT_TRUE(f.matches(product("3", "c", "b", 50, 3, 0, {{"size", "41"}})));
}

TEST(FilterParse, NumbersCompareWithEveryOperatorAndIn) {
  auto p = product("1", "c", "b", 20, 5, 4.5);
  EXPECT_TRUE(Filter::parse("price = 20").matches(p));
  EXPECT_TRUE(Filter::parse("price != 21").matches(p));
  EXPECT_TRUE(Filter::parse("price <= 20 AND price >= 20").matches(p));
  EXPECT_FALSE(Filter::parse("price < 20 OR price > 20").matches(p));
  EXPECT_TRUE(Filter::parse("stock IN (1, 5, 9)").matches(p));
  EXPECT_TRUE(Filter::parse("rating >= 4.5 AND rating_count = 0").matches(p));
  EXPECT_TRUE(Filter::parse("price > -1").matches(p));
  // A leading '+' once made an empty token that never advanced (found by the fuzzer).
  EXPECT_TRUE(Filter::parse("price < +21").matches(p));
  EXPECT_TRUE(contains(parse_error("rating >= 4.+5"), "expected")) << parse_error("rating >= 4.+5");
}

TEST(FilterParseErrors, NameThePositionAndWhatWasExpected) {
  EXPECT_TRUE(contains(parse_error("price < cheap"), "at position 9: expected a number after \"<\""))
      << parse_error("price < cheap");
  EXPECT_TRUE(contains(parse_error("colour = 'red'"), "at position 1: unknown field \"colour\""));
  EXPECT_TRUE(
      contains(parse_error("category < 'x'"), "at position 10: \"<\" does not apply to the text field"));
  EXPECT_TRUE(contains(parse_error("category = 5"), "at position 12: expected a quoted string"));
  EXPECT_TRUE(contains(parse_error("(brand = 'a'"),
                       "at position 13: expected \")\" to close the \"(\" at position 1"));
  EXPECT_TRUE(contains(parse_error("brand = 'a' price < 3"), "at position 13: expected AND, OR or the end"));
  EXPECT_TRUE(contains(parse_error("brand = 'abc"), "at position 9: the string is not closed"));
  EXPECT_TRUE(contains(parse_error("brand IN ('a' 'b')"), "at position 15: expected \",\" or \")\""));
  EXPECT_TRUE(contains(parse_error("brand = 'a' AND"), "at position 16: expected a field"));
  EXPECT_TRUE(contains(parse_error("price ! 3"), "at position 7: expected \"!=\""));
  EXPECT_TRUE(contains(parse_error("price = 3 ; drop"), "at position 11: unexpected character \";\""));
  EXPECT_TRUE(contains(parse_error("attributes. = 'x'"), "expected an attribute name"));
  EXPECT_TRUE(contains(parse_error("in_stock = 1"), "expected TRUE or FALSE"));
  EXPECT_TRUE(contains(parse_error("   "), "the filter is empty"));
  EXPECT_TRUE(contains(parse_error(std::string("brand = 'a\0b'", 13)), "control character"));
}

TEST(FilterParseErrors, LimitsOnLengthDepthAndTermsAreEnforcedWithTheirValues) {
  ParseLimits limits;
  limits.max_length = 20;
  limits.max_depth = 4;
  limits.max_terms = 3;
  EXPECT_TRUE(contains(parse_error("brand = 'aaaaaaaaaaaaaaaaa'", limits), "the limit is 20"))
      << parse_error("x");
  EXPECT_TRUE(contains(parse_error("((((price=1))))", limits), "nested too deeply: the limit is 4"));
  EXPECT_EQ(parse_error("(((price=1)))", limits), "(parsed)");
  EXPECT_TRUE(contains(parse_error("stock IN (1,2,3)", limits), "too many terms: the limit is 3"));
  // The defaults hold a realistic filter and refuse a pathological one without crashing.
  std::string deep(100000, '(');
  EXPECT_TRUE(contains(parse_error(deep), "the limit is 4096"));
  std::string nested;
  for (int i = 0; i < 40; ++i) nested += "NOT ";
  EXPECT_TRUE(contains(parse_error(nested + "in_stock"), "nested too deeply: the limit is 32"));
}

TEST(FilterTable, EvaluateAgreesWithTheProductByProductReferenceOnRandomFilters) {
  std::mt19937 rng(7);
  const std::vector<std::string> categories{"Sneaker", "Sandal", "Bag", "Coat"};
  const std::vector<std::string> brands{"Atlas", "Fjord", "atlas ", ""};
  const std::vector<std::string> colors{"red", "Red", "blue", "pink"};
  Table table;
  std::vector<catalog::Product> products;
  for (int i = 0; i < 400; ++i) {
    std::map<std::string, std::string> attrs;
    if (rng() % 3) attrs[rng() % 2 ? "color" : "Color"] = colors[rng() % colors.size()];
    if (rng() % 2) attrs["size"] = std::to_string(36 + rng() % 8);
    products.push_back(product("p" + std::to_string(i), categories[rng() % 4], brands[rng() % 4],
                               double(rng() % 20000) / 100.0, int(rng() % 4), double(rng() % 51) / 10.0,
                               attrs));
    table.upsert(products.back());
  }
  // Updates and deletions must be reflected like fresh rows.
  for (int i = 0; i < 400; i += 7) {
    products[i].price = 1;
    products[i].attributes = {{"color", "pink"}};
    table.upsert(products[i]);
  }
  std::vector<bool> deleted(products.size(), false);
  for (int i = 3; i < 400; i += 11) {
    ASSERT_TRUE(table.remove(products[i].id));
    deleted[i] = true;
  }
  const std::vector<std::string> leaves{"category = 'sneaker'",
                                        "brand IN ('ATLAS', 'fjord')",
                                        "price < 50",
                                        "price >= 120.5",
                                        "in_stock",
                                        "stock = 0",
                                        "rating > 3.5",
                                        "attributes.color = 'red'",
                                        "attributes.COLOR != 'pink'",
                                        "attributes.size IN ('38','40')",
                                        "brand = ''",
                                        "attributes.missing = 'x'"};
  std::function<std::string(int)> random_expr = [&](int depth) -> std::string {
    const int choice = depth > 3 ? 0 : int(rng() % 4);
    if (choice == 0) return leaves[rng() % leaves.size()];
    if (choice == 1) return "NOT (" + random_expr(depth + 1) + ")";
    return "(" + random_expr(depth + 1) + (choice == 2 ? " AND " : " OR ") + random_expr(depth + 1) + ")";
  };
  std::size_t nonempty = 0;
  for (int trial = 0; trial < 300; ++trial) {
    auto f = Filter::parse(random_expr(0));
    auto mask = f.evaluate(table);
    ASSERT_EQ(mask.size(), table.rows());
    std::size_t count = 0;
    for (std::size_t i = 0; i < products.size(); ++i) {
      const bool expected = !deleted[i] && f.matches(products[i]);
      ASSERT_EQ(mask[*table.row_of(products[i].id)] != 0, expected)
          << f.to_string() << " on " << products[i].id;
      count += expected;
    }
    nonempty += count > 0 && count < products.size();
  }
  EXPECT_GT(nonempty, 100u);  // the random filters were selective, not trivially all or nothing
}

TEST(FilterTable, CopiesAreIndependentSnapshots) {
  Table a;
  a.upsert(product("x", "Bag", "Atlas", 10, 1, 4));
  Table b = a;
  b.upsert(product("x", "Bag", "Atlas", 99, 1, 4));
  b.upsert(product("y", "Coat", "Atlas", 5, 1, 4));
  EXPECT_EQ(a.rows(), 1u);
  EXPECT_EQ(a.price(0), 10);
  EXPECT_FALSE(a.row_of("y").has_value());
  EXPECT_EQ(b.price(*b.row_of("x")), 99);
  EXPECT_EQ(b.live(), 2u);
}

TEST(FilterFacets, CountCategoryBrandColourAndEveryPriceBucket) {
  Table t;
  t.upsert(product("1", "Sneaker", "Atlas", 10, 1, 4, {{"color", "red"}}));
  t.upsert(product("2", "sneaker", "Fjord", 30, 1, 4, {{"Color", "Red"}}));
  t.upsert(product("3", "Bag", "Atlas", 600, 1, 4));
  t.upsert(product("4", "Bag", "Atlas", 25, 1, 4, {{"color", "blue"}}));
  t.upsert(product("5", "Coat", "Zed", 1, 1, 4));
  t.remove("5");
  auto f = count_facets(t, {0, 1, 2, 3, 3, 4}, FacetOptions{});
  ASSERT_EQ(f.category.size(), 2u);
  EXPECT_EQ(f.category[0].value, "Bag");  // ties broken by value
  EXPECT_EQ(f.category[0].count, 2u);
  EXPECT_EQ(f.category[1].value, "Sneaker");  // first-seen spelling
  EXPECT_EQ(f.category[1].count, 2u);
  ASSERT_EQ(f.brand.size(), 2u);
  EXPECT_EQ(f.brand[0].value, "Atlas");
  EXPECT_EQ(f.brand[0].count, 3u);
  ASSERT_EQ(f.attributes["color"].size(), 2u);
  EXPECT_EQ(f.attributes["color"][0].value, "red");
  EXPECT_EQ(f.attributes["color"][0].count, 2u);
  ASSERT_EQ(f.price.size(), 6u);
  EXPECT_EQ(f.price[0].count, 1u);  // [0, 25): 10
  EXPECT_EQ(f.price[1].count, 2u);  // [25, 50): 30 and 25
  EXPECT_EQ(f.price[5].count, 1u);  // [500, ...): 600
  EXPECT_FALSE(f.price[5].to.has_value());
  EXPECT_EQ(f.price[2].count + f.price[3].count + f.price[4].count, 0u);

  // The JSON the API and the CLI print: one key per facet, the last bucket open-ended.
  const std::string json = facets_json(f);
  EXPECT_TRUE(contains(json, R"("category":[{"count":2,"value":"Bag"},{"count":2,"value":"Sneaker"}])"))
      << json;
  EXPECT_TRUE(contains(json, R"("color":[{"count":2,"value":"red"})")) << json;
  EXPECT_TRUE(contains(json, R"({"count":1,"from":500.0,"to":null})")) << json;
}

TEST(Table, FamiliesFollowGroupIdThroughUpdatesAndDeletes) {
  auto variant = [](const std::string& id, const std::string& group, const std::string& color) {
    auto p = product(id, "Sneaker", "Fjord", 10, 1, 4, {{"color", color}, {"Size", "42"}});
    p.group_id = group;
    p.currency = "EUR";
    return p;
  };
  Table t;
  const auto a = t.upsert(variant("a", "runner", "red"));
  const auto b = t.upsert(variant("b", "Runner", "blue"));  // same family: ASCII case ignored, as filters do
  const auto c = t.upsert(variant("c", "", "green"));       // no group: a family of one
  const auto d = t.upsert(variant("d", "trail", "black"));
  EXPECT_EQ(t.family(a), (std::vector<std::uint32_t>{a, b}));
  EXPECT_EQ(t.family(b), (std::vector<std::uint32_t>{a, b}));
  EXPECT_EQ(t.family(c), (std::vector<std::uint32_t>{c}));
  EXPECT_EQ(t.family_key(a), t.family_key(b));
  EXPECT_NE(t.family_key(a), t.family_key(d));
  EXPECT_NE(t.family_key(c), t.family_key(d));
  EXPECT_EQ(t.attribute(a, "color"), "red");
  EXPECT_EQ(t.attribute(a, "SIZE"), "42");
  EXPECT_EQ(t.attribute(a, "material"), "");
  EXPECT_EQ(t.currency(a), "EUR");

  // A copy (what a metadata write publishes) changes on its own.
  Table next(t);
  next.upsert(variant("b", "trail", "blue"));  // b moves to the other family
  next.upsert(variant("e", "RUNNER", "white"));
  next.remove("a");
  EXPECT_EQ(next.family(next.row_of("e").value()), (std::vector<std::uint32_t>{*next.row_of("e")}));
  EXPECT_EQ(next.family(d), (std::vector<std::uint32_t>{b, d}));
  EXPECT_EQ(t.family(a), (std::vector<std::uint32_t>{a, b}));  // the original is untouched
  next.upsert(variant("a", "runner", "red"));                  // back from the dead, in its family again
  EXPECT_EQ(next.family(a), (std::vector<std::uint32_t>{a, *next.row_of("e")}));
  next.remove("c");
  EXPECT_TRUE(next.family(c).empty());
}

}  // namespace
}  // namespace lookalike::filter
