// Variant grouping of search results (SearchOptions::group_variants), on the
// search snapshot's metadata table: no store lookups. Internal to src/search.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "filter/filter.h"
#include "search/engine.h"

namespace lookalike::search {

// The family key of a product (filter::Table::family_key of its row). A product the
// table does not hold (deleted since the vectors were indexed) is a family of its
// own: it gets a key made from `fallback`, which the caller keeps distinct per product.
std::uint64_t family_of(const filter::Table& table, const std::string& product_id, std::uint32_t fallback);

// Cuts hits (in their final order) to the first `units`: families when grouping (all
// hits of the first `units` families stay, in order), hits when not.
void keep_first(const filter::Table& table, bool grouping, std::size_t units, std::vector<ProductHit>& hits);

// Which of a family's variants among the hits stands for it.
enum class Representative {
  kFirst,      // the first one met in the final order (the look order, or a field sort's)
  kBestPhoto,  // the one that matches the photo best: the largest visual plus colour
               // contribution (ProductHit::ranking), the first one met among equals
};

// Collapses hits (in their final order) to one per family and keeps the first k
// families. A family keeps the place of its first hit (its best final score), and is
// shown by its `representative`: a re-ranked search by photo shows the variant in the
// photo's colour even when a sibling scores higher on business signals (it is out of
// stock, or the sibling is more popular), since that is the variant the shopper
// photographed. Each kept hit gets its family's other live variants
// (ProductHit::variants, by product id, at most kMaxSwatches) with the scores of
// those that were among the hits, and the family's size.
void group_variants(const filter::Table& table, std::size_t k, Representative representative,
                    std::vector<ProductHit>& hits);

}  // namespace lookalike::search
