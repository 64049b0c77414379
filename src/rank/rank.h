// Re-ranking of search candidates: the final score of a result combines its visual
// similarity with the shop's business signals and the shopper's taste, as a pure
// function of plain numbers (no store, no index). The engine gathers the numbers for
// each candidate and applies rerank(); everything here is deterministic and
// thread-safe (no shared state).
//
// The score is a weighted sum: score = sum over components of weight * value, where
// each component's value is defined below (component_name lists them). Explain
// output is exactly these parts, so the contributions always add up to the score.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lookalike::rank {

// How a product that is out of stock (stock <= 0) is treated.
enum class StockPolicy {
  kDemote,  // it stays, with the stock component's value -1 (so it loses `weights.stock`)
  kHide,    // it is removed from the results
};

// The components of the score, in the order of Score::parts.
//   visual      the cosine similarity of the product's best image to the query,
//               rescaled over the query's candidates: 1 for the most similar, 0 for
//               the least (1 for all when they are equally similar). Cosines of one
//               model can all sit within 0.005 of each other, of another within 0.3;
//               rescaling makes the weights mean the same for both, and keeps a
//               clear look-alike (far above the rest) on top.
//   popularity  P / (P + popularity_half_saturation), 0..1, where P is the product's
//               time-decayed, type-weighted event count (catalog/event.h)
//   rating      (B - rating_prior_mean) / 5, where B is the Bayesian average rating
//               (bayesian_rating); 0 for a product without reviews
//   stock       -1 when out of stock (policy kDemote), else 0. With grouped results
//               a product counts as out of stock only when its whole family is
//               (Candidate::family_in_stock): a photo of a sold-out colour should
//               bring its family first, on a card that shows that colour as sold out
//               and the colours in stock as swatches, not a look-alike in stock.
//   price       fit - 1, -1..0, where fit = exp(-d / price_tolerance) and d is the
//               relative distance of the price to the requested target or range;
//               0 when the request names no price
//   recency     2^(-age / recency_half_life_days), 0..1, age since the product was
//               first stored; 0 when unknown
//   taste       (1 - m) * look + m * attributes, 0..1, where m is the profile's
//               taste_attribute_share, look is the cosine similarity of the product's
//               image to the shopper's taste vector and attributes is the product's
//               attribute_affinity to the shopper's attribute taste, each rescaled over
//               the candidates like visual. When the shopper has only one of the two
//               (or m is 0 or 1), that one alone is the value; 0 when the request names
//               no shopper or they have no taste
//   colour      the colour similarity (image/colour.h: histogram intersection, 0..1)
//               of the product's best-matching image to the query photo, not
//               rescaled: 1 is the same colour mix whatever the other candidates are.
//               0 when either colour is unknown: searches by vector alone, an image
//               stored without a colour (see the README), a query with no product pixels.
//               "More like this" compares with the product's own stored colour.
//   text        the product's text relevance (bm25, catalog::TextMatch) over the best
//               among the query's candidates, 0..1; 0 when the query has no text.
//               Divided by the best rather than rescaled like visual: products that
//               match the same words have nearly equal bm25, and stretching those small
//               differences to 0..1 would let noise outweigh the look. In a search by
//               text alone the text relevance takes visual's place (text_only_profile).
enum Component : std::size_t {
  kVisual,
  kPopularity,
  kRating,
  kStock,
  kPrice,
  kRecency,
  kTaste,
  kColour,
  kText,
  kComponentCount
};
const char* component_name(Component component);  // "visual", "popularity", ...

// Weights per component, indexed by Component.
using Weights = std::array<double, kComponentCount>;

// A named ranking profile. Every field has a default (the built-in "default" profile).
struct Profile {
  std::string name = "default";
  // colour 0.5: measured on the demo's colour variants (bench/RESULTS.md, "Colour").
  Weights weights = {1.0, 0.4, 0.2, 0.5, 0.3, 0.05, 0.3, 0.5, 0.3};
  StockPolicy out_of_stock = StockPolicy::kDemote;
  double rating_prior_mean = 3.5;          // stars: what an unreviewed product is assumed to be
  double rating_prior_count = 20;          // reviews: how much evidence the prior is worth
  double popularity_half_saturation = 10;  // decayed weighted events where popularity reaches 0.5
  double price_tolerance = 0.25;           // relative price distance where fit falls to 1/e
  double recency_half_life_days = 30;
  int candidate_depth = 100;  // products re-ranked per query, independent of k
  // The attribute part's share of the taste value (see taste above), 0..1: 0 is the
  // look alone, 1 the brand, colour, material and price band alone.
  double taste_attribute_share = 0.5;
};

inline constexpr int kMaxCandidateDepth = 1000;
inline constexpr double kMaxWeight = 100;
inline constexpr std::size_t kMaxProfileNameBytes = 64;

// The built-in profiles. "default" may be replaced over the API; "visual" (pure
// visual order: every weight but visual is 0) is fixed.
Profile default_profile();
Profile visual_profile();
inline constexpr const char* kDefaultProfile = "default";
inline constexpr const char* kVisualProfile = "visual";

// The profile a search by text alone is scored with: there is no photo, so the text
// relevance takes the visual component's place (the text weight becomes the visual
// weight, the visual weight 0), and a profile weighs relevance against business
// signals the same way whether the shopper took a photo or typed words.
Profile text_only_profile(const Profile& profile);

// True for names of 1..64 characters from [A-Za-z0-9_-].
bool valid_profile_name(const std::string& name);

// Reads a profile from JSON text: an object with any of
//   {"weights": {"visual": 1, "popularity": 0.1, ...}, "out_of_stock": "demote"|"hide",
//    "rating_prior": {"mean": 3.5, "count": 20}, "popularity_half_saturation": 10,
//    "price_tolerance": 0.25, "recency_half_life_days": 30, "candidate_depth": 100,
//    "taste_attribute_share": 0.5}
// Missing fields keep the built-in default's value. Throws Error(kInvalidInput)
// naming the field for unknown keys, wrong types and values out of range (weights
// 0..100, depth 1..1000, prior mean 0..5, prior count 0..1e6, taste_attribute_share
// 0..1, the rest > 0).
Profile parse_profile(const std::string& name, const std::string& json_text);
// The profile as a JSON object (all fields, "name" included), parseable by parse_profile.
std::string profile_json(const Profile& profile);

// The price a shopper asked for: a target price, a range, both or neither.
struct PriceTarget {
  std::optional<double> target;
  std::optional<double> min;
  std::optional<double> max;
  bool any() const { return target || min || max; }
};

// ---- the attribute half of a shopper's taste ----

// What a taste learns besides the look, per event: the product's brand, its
// attributes "color" and "material", and its price band (price_band). Values are
// compared exactly (case and spelling matter).
inline constexpr std::array<const char*, 4> kTasteKinds{"brand", "color", "material", "price_band"};

// The band of a price, as text: bands are a factor 1.5 wide on a log scale, band b
// holding prices in [1.5^b, 1.5^(b+1)) ("8" is 25.63..38.44 in any currency); "" for
// a price <= 0. Narrow enough that a shopper's budget and premium choices within one
// category fall in different bands, absolute so that no category statistics are needed.
std::string price_band(double price);

// A product's value for each kind of kTasteKinds, in that order ("" when it has none).
std::array<std::string, kTasteKinds.size()> taste_values(const std::string& brand,
                                                         const std::map<std::string, std::string>& attributes,
                                                         double price);

// A shopper's attribute taste ready for scoring: for each kind, each value's share of
// the kind's total weight (shares of a kind sum to 1). Kinds without weight are absent.
class AttributeTaste {
 public:
  // weight: the decayed, type-weighted engagement with (kind, value) as of one common
  // time; rows with unknown kinds or weight <= 0 are ignored.
  void add(const std::string& kind, const std::string& value, double weight);
  bool empty() const;
  // The product's affinity, 0..1: the mean, over the kinds this taste has, of the
  // share of the product's value in that kind (0 when it has no value of that kind).
  double affinity(const std::array<std::string, kTasteKinds.size()>& values) const;
  // The share of value in kind, 0..1 (0 when unknown).
  double share(const std::string& kind, const std::string& value) const;

 private:
  std::array<std::map<std::string, double>, kTasteKinds.size()> weights_;
  std::array<double, kTasteKinds.size()> totals_{};
};

// What is known about one candidate product.
struct Candidate {
  double visual = 0;  // cosine similarity, -1..1
  double price = 0;
  std::int64_t stock = 0;
  // Set when results are grouped by family and another live variant of the product's
  // family is in stock: the family's card offers that variant, so a sold-out product
  // is not demoted (see stock above).
  bool family_in_stock = false;
  double rating = 0;  // 0..5
  std::int64_t rating_count = 0;
  double popularity = 0;                 // decayed weighted event count, now (>= 0)
  std::optional<double> age_days;        // since first stored
  std::optional<double> taste;           // cosine to the shopper's taste vector
  std::optional<double> taste_affinity;  // AttributeTaste::affinity to the shopper's attribute taste
  std::optional<double> colour;          // colour similarity to the query photo, 0..1; nullopt: unknown
  std::optional<double> text;            // text relevance (> 0, higher is better), when the query has text
};

struct Part {
  double value = 0;
  double weight = 0;
  double contribution() const { return value * weight; }
};

struct Score {
  double total = 0;                        // the sum of the parts' contributions
  double similarity = 0;                   // Candidate::visual, before rescaling
  std::optional<double> taste_similarity;  // Candidate::taste, before rescaling
  std::optional<double> taste_affinity;     // Candidate::taste_affinity, before rescaling
  std::optional<double> taste_look;         // the look part of the taste value, rescaled (0..1)
  std::optional<double> taste_attributes;   // the attribute part of the taste value, rescaled (0..1)
  double taste_attribute_share = 0;         // Profile::taste_attribute_share
  std::optional<double> colour_similarity;  // Candidate::colour, when known
  std::optional<double> text_relevance;    // Candidate::text, before dividing by the best
  std::array<Part, kComponentCount> parts{};
  bool hidden = false;              // removed by the stock policy
  bool family_in_stock = false;     // out of stock, not demoted: its family is in stock
  double rating_average = 0;        // the Bayesian average B, stars
  std::optional<double> price_fit;  // 0..1, when a price was requested
};

// (count * rating + prior_count * prior_mean) / (count + prior_count): one 5-star
// review barely moves an item off the prior, a thousand 4.8s pull it to 4.8.
double bayesian_rating(double rating, std::int64_t count, double prior_mean, double prior_count);

// The relative distance of a price to a target (|p - t| / t) or a range (0 inside,
// else the distance to the nearer end over that end); the smaller when both are given.
double price_distance(double price, const PriceTarget& target);

// The spread of the raw similarities over a query's candidates, for rescaling.
struct Ranges {
  double visual_min = 0, visual_max = 1;
  double taste_min = 0, taste_max = 1;
  double affinity_min = 0, affinity_max = 1;
  double text_max = 0;  // the best text relevance; 0 when none has text
};
Ranges ranges_of(const std::vector<Candidate>& candidates);

Score score(const Profile& profile, const PriceTarget& price, const Candidate& candidate,
            const Ranges& ranges);

// The score as a JSON object: {"score": total, "components": {"visual": {"value",
// "weight", "contribution"}, ...every component...}, "similarity": cosine,
// "rating_average": B} plus "price_fit" when a price was requested and
// "taste_similarity" when the shopper has a taste vector, "taste_affinity" when they
// have an attribute taste, "taste_parts": {"look", "attributes", "attribute_share"}
// (the rescaled parts that make the taste value) when they have either,
// "colour_similarity" when both colours were known (its absence tells an unknown
// colour from a different one), "text_relevance" when the query has text and
// "family_in_stock": true when a sold-out product was not demoted. Numbers
// are rounded to 6 decimals.
std::string explain_json(const Score& score);

struct Ranked {
  std::size_t index = 0;  // into the candidates given to rerank
  Score score;
};

// Scores every candidate (ranges_of all of them), drops the hidden ones, and orders the rest by score, best
// first; ties go to the higher visual similarity, then to the earlier candidate. So
// with every weight but visual at 0 the order is the visual order.
std::vector<Ranked> rerank(const Profile& profile, const PriceTarget& price,
                           const std::vector<Candidate>& candidates);

}  // namespace lookalike::rank
