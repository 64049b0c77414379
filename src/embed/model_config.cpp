#include "embed/model_config.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

namespace lookalike::embed {
using nlohmann::json;

Error invalid_model(const std::string& what, const std::string& why) {
  return Error(ErrorKind::kInvalidInput, what + ": " + why);
}

std::string shape_text(const std::int64_t* sizes, std::size_t rank) {
  std::string s;
  for (std::size_t i = 0; i < rank; ++i) s += (s.empty() ? "" : " x ") + std::to_string(sizes[i]);
  return s.empty() ? "a scalar" : s;
}

ModelConfig parse_model_config(const std::string& text, const std::string& what) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    throw invalid_model(what, std::string("the model config is not JSON: ") + e.what());
  }
  if (!j.is_object()) throw invalid_model(what, "the model config must be a JSON object");
  ModelConfig c;
  try {
    for (const auto& [key, value] : j.items()) {
      if (key == "name") {
        c.info.name = value.get<std::string>();
      } else if (key == "version") {
        c.info.version = value.get<std::string>();
      } else if (key == "output") {
        if (value.is_string()) {
          c.output_name = value.get<std::string>();
          if (c.output_name.empty())
            throw invalid_model(what, "model config: output must not be an empty name");
        } else {
          c.output = value.get<int>();
        }
      } else if (key == "pooling") {
        c.pooling = value.get<std::string>();
      } else if (key == "normalize") {
        c.normalize = value.get<bool>();
      } else if (key == "dim") {
        c.info.dim = value.get<int>();
      } else if (key == "input") {
        auto& in = c.info.input;
        in.mean.clear();
        in.stddev.clear();
        std::string order = "rgb";
        std::optional<std::string> gray;
        for (const auto& [k, v] : value.items()) {
          if (k == "width") {
            in.width = v.get<int>();
          } else if (k == "height") {
            in.height = v.get<int>();
          } else if (k == "channels") {
            in.channels = v.get<int>();
          } else if (k == "channel_order") {
            order = v.get<std::string>();
          } else if (k == "mean") {
            in.mean = v.get<std::vector<float>>();
          } else if (k == "std") {
            in.stddev = v.get<std::vector<float>>();
          } else if (k == "gray") {
            gray = v.get<std::string>();
          } else {
            throw invalid_model(what, "unknown key \"input." + k + "\" in the model config");
          }
        }
        if (order != "rgb" && order != "bgr") {
          throw invalid_model(what, "input.channel_order must be \"rgb\" or \"bgr\", not \"" + order + "\"");
        }
        c.bgr = order == "bgr";
        if (gray) {
          if (in.channels != 1) throw invalid_model(what, "model config: input.gray needs 1 channel");
          try {
            in.gray = image::parse_gray(*gray, "input.gray");
          } catch (const Error& e) {
            throw invalid_model(what, std::string("model config: ") + e.what());
          }
        }
      } else {
        throw invalid_model(what, "unknown key \"" + key + "\" in the model config");
      }
    }
  } catch (const json::exception& e) {
    throw invalid_model(what, std::string("a model config field has the wrong type: ") + e.what());
  }
  const auto& in = c.info.input;
  auto require = [&](bool ok, const std::string& why) {
    if (!ok) throw invalid_model(what, "model config: " + why);
  };
  require(!c.info.name.empty() && c.info.name.find('/') == std::string::npos,
          "name must be non-empty, without '/'");
  require(!c.info.version.empty() && c.info.version.find('/') == std::string::npos,
          "version must be non-empty, without '/'");
  require(in.width >= 1 && in.width <= 1024 && in.height >= 1 && in.height <= 1024,
          "input.width and input.height must be 1..1024");
  require(in.channels == 1 || in.channels == 3, "input.channels must be 1 or 3");
  require(!c.bgr || in.channels == 3, "input.channel_order \"bgr\" needs 3 channels");
  require(in.mean.size() == std::size_t(in.channels) && in.stddev.size() == std::size_t(in.channels),
          "input.mean and input.std need one value per channel");
  for (float s : in.stddev) require(std::isfinite(s) && s > 0, "input.std values must be positive");
  for (float m : in.mean) require(std::isfinite(m), "input.mean values must be finite");
  require(c.info.dim >= 1 && c.info.dim <= 65536, "dim must be 1..65536");
  require(c.output >= 0 && c.output < 64, "output must be 0..63 or an output's name");
  require(c.pooling == "none" || c.pooling == "avg" || c.pooling == "max",
          "pooling must be \"none\", \"avg\" or \"max\"");
  return c;
}

std::string model_config_json(const ModelConfig& c) {
  const auto& in = c.info.input;
  json output = c.output_name.empty() ? json(c.output) : json(c.output_name);
  json j{{"name", c.info.name},
         {"version", c.info.version},
         {"input",
          {{"width", in.width},
           {"height", in.height},
           {"channels", in.channels},
           {"channel_order", c.bgr ? "bgr" : "rgb"},
           {"mean", in.mean},
           {"std", in.stddev}}},
         {"output", output},
         {"pooling", c.pooling},
         {"normalize", c.normalize},
         {"dim", c.info.dim}};
  if (in.channels == 1) j["input"]["gray"] = image::to_string(in.gray);
  return j.dump();
}

}  // namespace lookalike::embed
