#include "cli/serve.h"

#include <memory>
#include <string>

namespace lookalike::cli {
namespace {

// CLI11 2.1 reads std::filesystem::path through a string.
struct PathFlags {
  std::string data_dir;
  std::string web_dir;
};

}  // namespace

CLI::App* add_serve_command(CLI::App& app, server::ServerOptions& options) {
  auto* cmd = app.add_subcommand("serve", "Serve the HTTP API and the shopper page (docs/API.md)");
  auto paths = std::make_shared<PathFlags>();
  cmd->add_option("--data", paths->data_dir, "Data folder (made by ingest)")->required();
  cmd->add_option("--host", options.host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", options.port, "Port (0: any free port)")->capture_default_str();
  cmd->add_option("--admin-key", options.admin_key,
                  "Key for writes (default: LOOKALIKE_ADMIN_KEY, else DATA/keys.json, else generated)");
  cmd->add_option(
      "--search-key", options.search_key,
      "Key for search and reads (default: LOOKALIKE_SEARCH_KEY, else DATA/keys.json, else generated)");
  cmd->add_flag("--public-search", options.public_search, "Search and read routes without a key");
  cmd->add_option("--threads", options.threads, "Worker threads running requests")->capture_default_str();
  cmd->add_option("--queue", options.queue, "Requests waiting for a worker before 503 overloaded")
      ->capture_default_str();
  cmd->add_option("--web", paths->web_dir, "Folder of the shopper page (default: the repository's web/)");
  cmd->add_option("--max-body-bytes", options.max_body_bytes, "Largest request body")->capture_default_str();
  cmd->add_option("--cors-origin", options.cors_origin, "Allow this origin to call the API from a browser");
  cmd->callback([paths, &options] {
    options.data_dir = paths->data_dir;
    options.web_dir = paths->web_dir;
  });
  return cmd;
}

int run_serve(const server::ServerOptions& options) { return server::run_server(options); }

}  // namespace lookalike::cli
