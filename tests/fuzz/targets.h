// Fuzz entry points. Each takes arbitrary bytes and must neither crash nor leak
// nor let anything but the documented errors escape (it aborts if one does, so
// that the fuzzer and the corpus replay test report it). Built into libFuzzer
// binaries by scripts/fuzz.sh and replayed over tests/fuzz/corpus/<name>/ by the
// unit test fuzz_corpus.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lookalike::fuzz {

// image::sniff_format, read_dimensions, decode and decode_crop, with limits
// small enough that a valid header cannot make the fuzzer allocate gigabytes.
void image_decode(const std::uint8_t* data, std::size_t size);
// catalog::parse_json_line on the bytes as one line.
void catalog_jsonl(const std::uint8_t* data, std::size_t size);
// catalog::read_catalog on the bytes as a .csv file.
void catalog_csv(const std::uint8_t* data, std::size_t size);
// The JSON request bodies: parse_json_body, then what the search and product
// handlers do with the document (base64 images, the product's catalog rules).
void request_json(const std::uint8_t* data, std::size_t size);
// filter::Filter::parse on the bytes as an expression; a filter that parses is
// evaluated on a small metadata table.
void filter_expression(const std::uint8_t* data, std::size_t size);
// A raw HTTP request through httplib's request parser (request line, headers,
// Content-Length body, multipart/form-data), as the transport runs it, to a
// handler that reads the parts as the API does.
void http_request(const std::uint8_t* data, std::size_t size);

struct Target {
  const char* name;
  void (*run)(const std::uint8_t*, std::size_t);
};
const std::vector<Target>& targets();

}  // namespace lookalike::fuzz
