#include "fuzz/targets.h"

#include <httplib.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "catalog/product.h"
#include "common/error.h"
#include "filter/filter.h"
#include "image/image.h"
#include "server/api.h"
#include "server/request_body.h"

namespace lookalike::fuzz {
namespace {

namespace fs = std::filesystem;

// Anything but an expected error is a finding: say what, and abort so that the
// fuzzer records the input and the replay test fails.
[[noreturn]] void finding(const char* target, const char* what) {
  std::fprintf(stderr, "fuzz target %s: unexpected %s\n", target, what);
  std::abort();
}

template <typename F>
void expect_only_errors(const char* target, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::kInternal) finding(target, e.what());
  } catch (const server::ApiError& e) {
    if (e.status >= 500) finding(target, e.message.c_str());
  } catch (const std::exception& e) {
    finding(target, e.what());
  } catch (...) {
    finding(target, "non-standard exception");
  }
}

std::string as_string(const std::uint8_t* data, std::size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

// A request as the transport's connection hands it to httplib: the bytes, then
// end of input; what httplib writes back is dropped.
class MemoryStream final : public httplib::Stream {
 public:
  MemoryStream(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool is_readable() const override { return true; }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, std::size_t size) override {
    const std::size_t n = std::min(size, size_ - pos_);
    std::memcpy(ptr, data_ + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char*, std::size_t size) override { return static_cast<ssize_t>(size); }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 1;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 2;
  }
  socket_t socket() const override { return -1; }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

class RequestParser final : public httplib::Server {
 public:
  RequestParser() {
    set_payload_max_length(1u << 20);
    auto handler = [](const httplib::Request& req, httplib::Response& res) {
      // What the search and product handlers do with the parts.
      for (const auto& entry : req.files) {
        const std::string& content = entry.second.content;
        if (entry.first == "product") {
          expect_only_errors("http_request", [&] { server::parse_json_body(content, "the product part"); });
        } else if (!content.empty()) {
          expect_only_errors("http_request", [&] {
            image::sniff_format(reinterpret_cast<const std::uint8_t*>(content.data()), content.size());
          });
        }
      }
      res.set_content(std::to_string(req.files.size()) + " " + std::to_string(req.body.size()), "text/plain");
    };
    Get(".*", handler);
    Post(".*", handler);
    Put(".*", handler);
    Delete(".*", handler);
  }
  void run(httplib::Stream& stream) {
    bool closed = false;
    process_request(stream, /*close_connection=*/true, closed, [](httplib::Request&) {});
  }
};

}  // namespace

void image_decode(const std::uint8_t* data, std::size_t size) {
  image::DecodeLimits limits;
  limits.max_file_bytes = 1u << 20;
  limits.max_width = limits.max_height = 4096;
  limits.max_pixels = 4'000'000;
  expect_only_errors("image_decode", [&] {
    const image::Format format = image::sniff_format(data, size);
    image::read_dimensions(data, size, format);
  });
  expect_only_errors("image_decode", [&] {
    const image::Image img = image::decode(data, size, limits, /*min_side=*/28);
    if (img.pixels.size() != static_cast<std::size_t>(img.width) * img.height * img.channels) {
      finding("image_decode", "pixel buffer of the wrong size");
    }
  });
  if (size > 0 && (data[size - 1] & 1)) {
    expect_only_errors("image_decode", [&] { image::decode_crop(data, size, limits, {1, 2, 20, 10}, 8); });
  }
}

void catalog_jsonl(const std::uint8_t* data, std::size_t size) {
  expect_only_errors("catalog_jsonl", [&] {
    catalog::CatalogEntry entry = catalog::parse_json_line(as_string(data, size), {});
    // What the store does with an accepted product: write it back as a line.
    catalog::parse_json_line(catalog::to_json_line(entry.product), {});
  });
}

void catalog_csv(const std::uint8_t* data, std::size_t size) {
  static const fs::path file = [] {
    std::string dir = (fs::temp_directory_path() / "lookalike-fuzz-XXXXXX").string();
    if (::mkdtemp(dir.data()) == nullptr) finding("catalog_csv", "mkdtemp failure");
    return fs::path(dir) / "catalog.csv";
  }();
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  catalog::ParseLimits limits;
  limits.max_line_bytes = 4096;
  expect_only_errors("catalog_csv", [&] {
    catalog::read_catalog(
        file, limits,
        [](std::size_t, catalog::CatalogEntry&& entry) {
          if (entry.product.id.empty()) finding("catalog_csv", "entry without an id");
        },
        [](std::size_t, const std::string&) {});
  });
}

void request_json(const std::uint8_t* data, std::size_t size) {
  expect_only_errors("request_json", [&] {
    nlohmann::json doc = server::parse_json_body(as_string(data, size), "the body");
    if (doc.contains("image_base64") && doc["image_base64"].is_string()) {
      server::decode_base64(doc["image_base64"].get<std::string>(), "image_base64");
    }
    // A product body, as PUT /v1/products/{id} checks it: the catalog's rules.
    doc["id"] = "fuzz";
    doc.erase("images_base64");
    catalog::parse_json_line(doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), {});
  });
}

void http_request(const std::uint8_t* data, std::size_t size) {
  static RequestParser parser;
  MemoryStream stream(data, size);
  expect_only_errors("http_request", [&] { parser.run(stream); });
}

void filter_expression(const std::uint8_t* data, std::size_t size) {
  static const filter::Table table = [] {
    filter::Table t;
    catalog::Product a;
    a.id = "a";
    a.category = "Sneaker";
    a.brand = "Atlas";
    a.price = 40;
    a.stock = 3;
    a.attributes = {{"color", "red"}};
    t.upsert(a);
    catalog::Product b;
    b.id = "b";
    b.category = "Bag";
    b.price = 600;
    t.upsert(b);
    return t;
  }();
  expect_only_errors("filter_expression", [&] {
    const auto mask = filter::Filter::parse(as_string(data, size)).evaluate(table);
    if (mask.size() != table.rows()) finding("filter_expression", "mask of the wrong size");
  });
}

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {{"image_decode", image_decode},
                                          {"catalog_jsonl", catalog_jsonl},
                                          {"catalog_csv", catalog_csv},
                                          {"request_json", request_json},
                                          {"filter_expression", filter_expression},
                                          {"http_request", http_request}};
  return all;
}

}  // namespace lookalike::fuzz
