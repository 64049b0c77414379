// The `serve` subcommand: its flags, and running the server.
#pragma once

#include <CLI/CLI.hpp>

#include "server/server.h"

namespace lookalike::cli {

// Adds `serve` to app; its flags fill options (and their defaults are options').
CLI::App* add_serve_command(CLI::App& app, server::ServerOptions& options);

// Runs the server until SIGTERM/SIGINT; returns the exit status.
int run_serve(const server::ServerOptions& options);

}  // namespace lookalike::cli
