#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "common/container_file.h"
#include "common/error.h"
#include "common/files.h"
#include "support/test_support.h"

namespace lookalike {

namespace {

namespace fs = std::filesystem;
using lookalike::testing::read_text;
using lookalike::testing::contains;
using lookalike::testing::error_from;
using lookalike::testing::TempDir;
using lookalike::testing::write_bytes;
using lookalike::testing::write_text;
using Bytes = std::vector<std::uint8_t>;

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

Bytes read_bytes(const fs::path& path) {
  std::string text = read_text(path);
  return Bytes(text.begin(), text.end());
}

// ---- read_file ----

TEST(FilesRead, ReturnsTheWholeFile) {
  TempDir dir;
  Bytes content(200'000);
  for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<std::uint8_t>(i * 31 + 7);
  write_bytes(dir / "f.bin", content);
  EXPECT_EQ(read_file(dir / "f.bin", content.size()), content);
}

TEST(FilesRead, FileOverTheLimitIsTooLarge) {
  TempDir dir;
  write_text(dir / "f.txt", std::string(1001, 'x'));
  auto e = error_from([&] { read_file(dir / "f.txt", 1000); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kTooLarge);
  EXPECT_TRUE(contains(e->what(), (dir / "f.txt").string())) << e->what();
  EXPECT_EQ(read_file(dir / "f.txt", 1001).size(), 1001u);
}

TEST(FilesRead, LimitIsEnforcedForLargeFilesWithoutReadingThemWhole) {
  TempDir dir;
  write_text(dir / "big", std::string(300'000, 'x'));
  auto e = error_from([&] { read_file(dir / "big", 10); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kTooLarge);
}

TEST(FilesRead, MissingFileIsNotFoundNamingThePath) {
  TempDir dir;
  auto e = error_from([&] { read_file(dir / "nope.bin", 100); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kNotFound);
  EXPECT_TRUE(contains(e->what(), "nope.bin")) << e->what();
}

TEST(FilesRead, EmptyFileIsEmpty) {
  TempDir dir;
  write_text(dir / "empty", "");
  EXPECT_TRUE(read_file(dir / "empty", 0).empty());
}

// ---- write_file_atomic ----

TEST(FilesWriteAtomic, CreatesAndReplacesContentLeavingNoTempFiles) {
  TempDir dir;
  const fs::path target = dir / "data.bin";
  write_file_atomic(target, "first version", 13);
  EXPECT_EQ(read_text(target), "first version");
  write_file_atomic(target, "2nd", 3);
  EXPECT_EQ(read_text(target), "2nd");
  write_file_atomic(target, "", 0);
  EXPECT_EQ(read_text(target), "");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"data.bin"});
}

TEST(FilesWriteAtomic, TargetThatIsADirectoryFailsWithIOAndLeavesNoTempFile) {
  TempDir dir;
  fs::create_directories(dir / "target" / "inside");
  auto e = error_from([&] { write_file_atomic(dir / "target", "x", 1); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kIO);
  EXPECT_TRUE(contains(e->what(), (dir / "target").string())) << e->what();
  EXPECT_TRUE(fs::is_directory(dir / "target" / "inside"));
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"target"});
}

TEST(FilesWriteAtomic, FolderThatCannotHoldFilesFailsWithIO) {
  TempDir dir;
  write_text(dir / "plain", "not a folder");
  auto e = error_from([&] { write_file_atomic(dir / "plain" / "x.bin", "x", 1); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kIO);
  EXPECT_EQ(read_text(dir / "plain"), "not a folder");

  e = error_from([&] { write_file_atomic(dir / "missing" / "x.bin", "x", 1); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kIO);
  EXPECT_FALSE(fs::exists(dir / "missing"));
}

// Works as root too: a file size limit makes write() itself fail half-way.
TEST(FilesWriteAtomic, FailedWriteKeepsTheOldFileAndRemovesTheTempFile) {
  TempDir dir;
  const fs::path target = dir / "keep.bin";
  write_file_atomic(target, "old content", 11);

  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  rlimit small = saved;
  small.rlim_cur = 4096;
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string big(64 * 1024, 'n');
  auto e = error_from([&] { write_file_atomic(target, big.data(), big.size()); });
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::signal(SIGXFSZ, old_handler);

  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kIO);
  EXPECT_EQ(read_text(target), "old content");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"keep.bin"});
}

// A model written by `lookalike train` must be readable by the server's user,
// as any file written with the process's umask would be.
TEST(FilesWriteAtomic, NewFilesGetPermissionsFromTheUmask) {
  TempDir dir;
  const mode_t old_mask = ::umask(022);
  write_file_atomic(dir / "shared.bin", "x", 1);
  ::umask(027);
  write_file_atomic(dir / "group.bin", "x", 1);
  ::umask(old_mask);
  EXPECT_EQ(fs::status(dir / "shared.bin").permissions(),
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
  EXPECT_EQ(fs::status(dir / "group.bin").permissions(),
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
}

TEST(FilesWriteAtomic, RelativePathWritesIntoTheWorkingDirectory) {
  TempDir dir;
  const fs::path old_cwd = fs::current_path();
  fs::current_path(dir.path());
  write_file_atomic("rel.txt", "relative", 8);
  fs::current_path(old_cwd);
  EXPECT_EQ(read_text(dir / "rel.txt"), "relative");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"rel.txt"});
}

// `lookalike ingest --data shop` in the working directory: a folder name without
// a parent used to fail with "cannot create : No such file or directory".
TEST(FilesPrivateDirectory, ABareFolderNameIsCreatedInTheWorkingDirectory) {
  TempDir dir;
  const fs::path old_cwd = fs::current_path();
  fs::current_path(dir.path());
  create_private_directory("shop");
  create_private_directory("shop");  // already there: nothing to do
  create_private_directory("nested/shop");
  fs::current_path(old_cwd);
  EXPECT_TRUE(fs::is_directory(dir / "shop"));
  EXPECT_EQ(fs::status(dir / "shop").permissions(), fs::perms::owner_all);
  EXPECT_TRUE(fs::is_directory(dir / "nested" / "shop"));
}

TEST(FilesStaleTempFiles, RemovesOnlyThoseOfProcessesThatNoLongerRun) {
  TempDir dir;
  const long dead = lookalike::testing::pid_of_an_ended_process();
  ASSERT_GT(dead, 0);
  const std::string dead_temp = ".index.lkx.tmp-" + std::to_string(dead) + "-0-0badc0de";
  const std::string live_temp = ".index.lkx.tmp-" + std::to_string(::getpid()) + "-1-0badc0de";
  write_text(dir / dead_temp, "half an index");
  write_text(dir / live_temp, "being written");
  write_text(dir / "index.lkx", "the index");
  write_text(dir / ".hidden", "not ours");
  EXPECT_EQ(remove_stale_temp_files(dir.path()), 1u);
  EXPECT_FALSE(std::filesystem::exists(dir / dead_temp));
  EXPECT_TRUE(std::filesystem::exists(dir / live_temp));
  EXPECT_TRUE(std::filesystem::exists(dir / "index.lkx"));
  EXPECT_TRUE(std::filesystem::exists(dir / ".hidden"));
  EXPECT_EQ(remove_stale_temp_files(dir / "missing"), 0u);
}

// ---- sha256_hex ----

TEST(FilesSha256, MatchesKnownVectors) {
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(sha256_hex(two_blocks.data(), two_blocks.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

// ---- resolve_inside ----

class FilesResolveInside : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_ / "catalog";
    fs::create_directories(root_ / "shoes" / "red");
    write_text(root_ / "shoes" / "red" / "1.png", "png");
    fs::create_directories(dir_ / "outside");
    write_text(dir_ / "outside" / "secret.txt", "secret");
    fs::create_directories(dir_ / "catalog2");
    write_text(dir_ / "catalog2" / "x.png", "sibling");
  }

  void expect_rejected(const std::string& relative) {
    auto e = error_from([&] { resolve_inside(root_, relative); });
    ASSERT_TRUE(e) << relative << " was accepted";
    EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput) << relative;
    EXPECT_TRUE(contains(e->what(), relative)) << e->what();
  }

  TempDir dir_;
  fs::path root_;
};

TEST_F(FilesResolveInside, AcceptsNestedRelativePaths) {
  const fs::path canonical_root = fs::canonical(root_);
  EXPECT_EQ(resolve_inside(root_, "shoes/red/1.png"), canonical_root / "shoes" / "red" / "1.png");
  EXPECT_EQ(resolve_inside(root_, "shoes/./red/../red/1.png"), canonical_root / "shoes" / "red" / "1.png");
  EXPECT_EQ(resolve_inside(root_, "new/not-yet.png"), canonical_root / "new" / "not-yet.png");
}

TEST_F(FilesResolveInside, AcceptsSymlinksThatStayInside) {
  fs::create_directory_symlink(root_ / "shoes", root_ / "alias");
  EXPECT_EQ(resolve_inside(root_, "alias/red/1.png"), fs::canonical(root_) / "shoes" / "red" / "1.png");
}

TEST_F(FilesResolveInside, AcceptsARootGivenThroughASymlinkOrWithATrailingSlash) {
  fs::create_directory_symlink(root_, dir_ / "link-to-catalog");
  EXPECT_EQ(resolve_inside(dir_ / "link-to-catalog", "shoes/red/1.png"),
            fs::canonical(root_) / "shoes" / "red" / "1.png");
  EXPECT_EQ(resolve_inside(root_.string() + "/", "shoes/red/1.png"),
            fs::canonical(root_) / "shoes" / "red" / "1.png");
}

TEST_F(FilesResolveInside, RejectsAbsolutePaths) {
  expect_rejected("/etc/passwd");
  expect_rejected((root_ / "shoes" / "red" / "1.png").string());
}

TEST_F(FilesResolveInside, RejectsDotDotEscapes) {
  expect_rejected("../outside/secret.txt");
  expect_rejected("..");
  expect_rejected("a/../../x");
  expect_rejected("shoes/red/../../../outside/secret.txt");
  expect_rejected("../catalog2/x.png");  // a sibling sharing the root's name as a prefix
}

TEST_F(FilesResolveInside, RejectsSymlinksLeavingTheRoot) {
  fs::create_directory_symlink(dir_ / "outside", root_ / "escape");
  fs::create_symlink(dir_ / "outside" / "secret.txt", root_ / "secret.png");
  expect_rejected("escape/secret.txt");
  expect_rejected("secret.png");
  expect_rejected("shoes/../escape/secret.txt");
}

TEST_F(FilesResolveInside, RejectsAnEmptyPath) {
  auto e = error_from([&] { resolve_inside(root_, ""); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
}

// ---- container files ----

const std::string kMagic("LKTEST\0\0", 8);

class ContainerFileFormat : public ::testing::Test {
 protected:
  void SetUp() override {
    payload_ = std::string("payload\0with\xff binary\x01 bytes\0", 28);
    write_container_file(path_, kMagic, 3, header_, payload_);
    original_ = read_bytes(path_);
  }

  // Reads path_ expecting Error(kInvalidInput) naming the file; returns the message.
  std::string expect_invalid(const std::string& context) {
    auto e = error_from([&] { read_container_file(path_, kMagic, 3, 1 << 20, "test file"); });
    if (!e) {
      ADD_FAILURE() << context << ": accepted";
      return "";
    }
    EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput) << context;
    EXPECT_TRUE(contains(e->what(), path_.string())) << context << ": " << e->what();
    EXPECT_TRUE(contains(e->what(), "test file")) << context << ": " << e->what();
    return e->what();
  }

  // A file with a correct checksum over whatever body is given.
  void write_with_checksum(std::string body) {
    std::string hex = sha256_hex(body.data(), body.size());
    for (std::size_t i = 0; i < 32; ++i)
      body.push_back(static_cast<char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16)));
    write_bytes(path_, Bytes(body.begin(), body.end()));
  }

  TempDir dir_;
  fs::path path_ = dir_ / "file.lk";
  std::string header_ = R"({"name":"x","n":3})";
  std::string payload_;
  Bytes original_;
};

TEST_F(ContainerFileFormat, RoundTripsHeaderAndBinaryPayload) {
  auto file = read_container_file(path_, kMagic, 3, 1 << 20, "test file");
  EXPECT_EQ(file.header, header_);
  EXPECT_EQ(std::string(file.payload.begin(), file.payload.end()), payload_);
  EXPECT_EQ(original_.size(), 8 + 4 + 4 + header_.size() + 8 + payload_.size() + 32);
  EXPECT_EQ(std::string(original_.begin(), original_.begin() + 8), kMagic);
}

TEST_F(ContainerFileFormat, RoundTripsEmptyHeaderAndPayload) {
  write_container_file(path_, kMagic, 3, "", "");
  auto file = read_container_file(path_, kMagic, 3, 1 << 20, "test file");
  EXPECT_EQ(file.header, "");
  EXPECT_TRUE(file.payload.empty());
}

TEST_F(ContainerFileFormat, EveryTruncationIsDetected) {
  for (std::size_t size :
       {std::size_t(0), std::size_t(4), std::size_t(8), std::size_t(15), std::size_t(16), std::size_t(30),
        original_.size() / 2, original_.size() - 33, original_.size() - 32, original_.size() - 1}) {
    write_bytes(path_, Bytes(original_.begin(), original_.begin() + static_cast<long>(size)));
    expect_invalid("truncated to " + std::to_string(size) + " bytes");
  }
}

TEST_F(ContainerFileFormat, EveryFlippedByteIsDetected) {
  for (std::size_t i = 0; i < original_.size(); ++i) {
    Bytes damaged = original_;
    damaged[i] ^= 0x10;
    write_bytes(path_, damaged);
    std::string message = expect_invalid("byte " + std::to_string(i) + " flipped");
    if (i >= 8) {
      EXPECT_TRUE(contains(message, "checksum")) << "byte " << i << ": " << message;
    }
  }
}

TEST_F(ContainerFileFormat, AppendedBytesAreDetected) {
  Bytes longer = original_;
  longer.push_back(0);
  write_bytes(path_, longer);
  expect_invalid("one byte appended");
}

TEST_F(ContainerFileFormat, WrongMagicIsReportedAsNotThisKindOfFile) {
  write_container_file(path_, std::string("LKOTHER\0", 8), 3, header_, payload_);
  std::string message = expect_invalid("wrong magic");
  EXPECT_TRUE(contains(message, "magic")) << message;
}

TEST_F(ContainerFileFormat, WrongVersionNamesBothVersions) {
  write_container_file(path_, kMagic, 4, header_, payload_);
  std::string message = expect_invalid("version 4");
  EXPECT_TRUE(contains(message, "version 4")) << message;
  EXPECT_TRUE(contains(message, "version 3")) << message;
}

TEST_F(ContainerFileFormat, HeaderLengthLargerThanTheFileIsDetected) {
  for (std::uint32_t header_length : {std::uint32_t(19), std::uint32_t(1000), std::uint32_t(0xFFFFFFFF)}) {
    std::string body(original_.begin(), original_.end() - 32);
    std::memcpy(&body[12], &header_length, 4);
    write_with_checksum(body);
    std::string message = expect_invalid("header length " + std::to_string(header_length));
    EXPECT_TRUE(contains(message, "length")) << message;
  }
}

TEST_F(ContainerFileFormat, PayloadLengthThatDisagreesWithTheFileIsDetected) {
  const std::uint64_t real = payload_.size();
  for (std::uint64_t payload_length : {std::uint64_t(0), real - 1, real + 1, ~std::uint64_t(0)}) {
    std::string body(original_.begin(), original_.end() - 32);
    std::memcpy(&body[16 + header_.size()], &payload_length, 8);
    write_with_checksum(body);
    std::string message = expect_invalid("payload length " + std::to_string(payload_length));
    EXPECT_TRUE(contains(message, "length")) << message;
  }
}

TEST_F(ContainerFileFormat, MissingFileIsNotFound) {
  auto e = error_from([&] { read_container_file(dir_ / "absent.lk", kMagic, 3, 1 << 20, "test file"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kNotFound);
}

TEST_F(ContainerFileFormat, FileOverTheSizeLimitIsTooLarge) {
  auto e = error_from([&] { read_container_file(path_, kMagic, 3, 50, "test file"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kTooLarge);
}

TEST_F(ContainerFileFormat, MagicOfTheWrongLengthIsAnInternalError) {
  auto e = error_from([&] { write_container_file(dir_ / "bad.lk", "SHORT", 1, "", ""); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInternal);
  EXPECT_FALSE(fs::exists(dir_ / "bad.lk"));
}

}  // namespace
}  // namespace lookalike
