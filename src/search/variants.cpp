#include "search/variants.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

namespace lookalike::search {

std::uint64_t family_of(const filter::Table& table, const std::string& product_id, std::uint32_t fallback) {
  if (auto row = table.row_of(product_id); row && table.alive(*row)) return table.family_key(*row);
  // Table keys use bit 32 at most: bit 33 keeps these apart from every one of them.
  return (std::uint64_t{2} << 32) | fallback;
}

void keep_first(const filter::Table& table, bool grouping, std::size_t units, std::vector<ProductHit>& hits) {
  if (!grouping) {
    if (hits.size() > units) hits.resize(units);
    return;
  }
  std::unordered_set<std::uint64_t> families;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < hits.size(); ++i) {
    const std::uint64_t family = family_of(table, hits[i].product_id, static_cast<std::uint32_t>(i));
    if (!families.count(family)) {
      if (families.size() == units) continue;
      families.insert(family);
    }
    if (kept != i) hits[kept] = std::move(hits[i]);
    ++kept;
  }
  hits.resize(kept);
}

namespace {

double photo_match(const ProductHit& hit) {
  if (!hit.ranking) return hit.score;
  return hit.ranking->parts[rank::kVisual].contribution() + hit.ranking->parts[rank::kColour].contribution();
}

}  // namespace

void group_variants(const filter::Table& table, std::size_t k, Representative representative,
                    std::vector<ProductHit>& hits) {
  std::unordered_map<std::string, float> scores;  // every candidate's final score, for the swatches
  for (const auto& hit : hits) scores.emplace(hit.product_id, hit.score);
  // Families in the order of their first hit, each with the hit that will show it.
  std::vector<std::uint64_t> order;
  std::unordered_map<std::uint64_t, std::size_t> shown_by;
  for (std::size_t i = 0; i < hits.size(); ++i) {
    const std::uint64_t family = family_of(table, hits[i].product_id, static_cast<std::uint32_t>(i));
    auto [it, first] = shown_by.emplace(family, i);
    if (first) {
      order.push_back(family);
    } else if (representative == Representative::kBestPhoto &&
               photo_match(hits[i]) > photo_match(hits[it->second])) {
      it->second = i;
    }
  }
  if (order.size() > k) order.resize(k);
  std::vector<ProductHit> shown;
  for (std::uint64_t family : order) shown.push_back(std::move(hits[shown_by[family]]));
  for (auto& hit : shown) {
    hit.variants.clear();
    hit.family_size = 1;
    const auto row = table.row_of(hit.product_id);
    if (!row || !table.alive(*row)) continue;
    std::vector<std::uint32_t> others;
    for (std::uint32_t member : table.family(*row)) {
      if (member != *row) others.push_back(member);
    }
    hit.family_size = others.size() + 1;
    std::sort(others.begin(), others.end(),
              [&](std::uint32_t a, std::uint32_t b) { return table.id(a) < table.id(b); });
    if (others.size() > kMaxSwatches) others.resize(kMaxSwatches);
    for (std::uint32_t member : others) {
      Variant v;
      v.product_id = table.id(member);
      v.color = table.attribute(member, "color");
      v.size = table.attribute(member, "size");
      v.price = table.price(member);
      v.currency = table.currency(member);
      v.stock = table.stock(member);
      v.images = table.images(member);
      if (auto it = scores.find(v.product_id); it != scores.end()) v.score = it->second;
      hit.variants.push_back(std::move(v));
    }
  }
  hits = std::move(shown);
}

}  // namespace lookalike::search
