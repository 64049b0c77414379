#include "filter/filter.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"

namespace lookalike::filter {

enum class Op { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };

struct Node {
  enum class Kind { kAnd, kOr, kNot, kText, kNumber, kInStock };
  Kind kind = Kind::kAnd;
  std::vector<std::shared_ptr<const Node>> children;  // kAnd, kOr: two or more; kNot: one
  std::string field;  // text: category, brand, group_id or attributes.<folded key>; number: price ...
  Op op = Op::kEq;
  std::vector<std::string> texts;  // as written
  std::vector<double> numbers;
  bool flag = true;  // kInStock: the value compared with
};

namespace {

using NodePtr = std::shared_ptr<const Node>;

const char* kFieldList =
    "category, brand, group_id, price, stock, rating, rating_count, in_stock or attributes.<key>";

bool is_text_field(const std::string& f) {
  return f == "category" || f == "brand" || f == "group_id" || f.compare(0, 11, "attributes.") == 0;
}
bool is_number_field(const std::string& f) {
  return f == "price" || f == "stock" || f == "rating" || f == "rating_count";
}

const char* op_text(Op op) {
  switch (op) {
    case Op::kEq:
      return "=";
    case Op::kNe:
      return "!=";
    case Op::kLt:
      return "<";
    case Op::kLe:
      return "<=";
    case Op::kGt:
      return ">";
    case Op::kGe:
      return ">=";
    case Op::kIn:
      return "IN";
    case Op::kNotIn:
      return "NOT IN";
  }
  return "?";
}

struct Token {
  enum class Type { kWord, kString, kNumber, kOp, kLParen, kRParen, kComma, kEnd };
  Type type = Type::kEnd;
  std::string text;     // the word, the unescaped string, the number's text, the operator
  std::size_t pos = 0;  // 1-based byte position of its first character
  double number = 0;
};

[[noreturn]] void fail(std::size_t pos, const std::string& message) {
  throw Error(ErrorKind::kInvalidInput, "filter: at position " + std::to_string(pos) + ": " + message);
}

std::string quote_text(const std::string& text) {
  std::string shown = text.size() > 40 ? text.substr(0, 40) + "..." : text;
  return "\"" + shown + "\"";
}

std::string describe(const Token& t) {
  switch (t.type) {
    case Token::Type::kEnd:
      return "the end of the filter";
    case Token::Type::kString:
      return "the string " + quote_text(t.text);
    case Token::Type::kLParen:
      return "\"(\"";
    case Token::Type::kRParen:
      return "\")\"";
    case Token::Type::kComma:
      return "\",\"";
    default:
      return quote_text(t.text);
  }
}

std::vector<Token> tokenize(const std::string& s) {
  std::vector<Token> tokens;
  std::size_t i = 0;
  auto word_char = [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '.' || c == '-' || c >= 0x80;
  };
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      ++i;
      continue;
    }
    Token t;
    t.pos = i + 1;
    if (c == '(' || c == ')' || c == ',') {
      t.type = c == '(' ? Token::Type::kLParen : c == ')' ? Token::Type::kRParen : Token::Type::kComma;
      t.text = std::string(1, static_cast<char>(c));
      ++i;
    } else if (c == '"' || c == '\'') {
      t.type = Token::Type::kString;
      ++i;
      bool closed = false;
      while (i < s.size()) {
        char d = s[i++];
        if (d == static_cast<char>(c)) {
          closed = true;
          break;
        }
        if (d == '\\') {
          if (i >= s.size()) break;
          d = s[i++];
          if (d != '"' && d != '\'' && d != '\\')
            fail(i - 1, "unknown escape \\" + std::string(1, d) + " in a string");
        }
        if (static_cast<unsigned char>(d) < 0x20) fail(i, "control character in a string");
        t.text.push_back(d);
      }
      if (!closed)
        fail(t.pos, "the string is not closed: expected a closing " + std::string(1, static_cast<char>(c)));
    } else if (c == '=' || c == '!' || c == '<' || c == '>') {
      t.type = Token::Type::kOp;
      t.text = std::string(1, static_cast<char>(c));
      ++i;
      if (i < s.size() && s[i] == '=') {
        t.text.push_back('=');
        ++i;
      } else if (c == '!') {
        fail(t.pos, "expected \"!=\", found \"!\"");
      }
    } else if (std::isdigit(c) || ((c == '-' || c == '+' || c == '.') && i + 1 < s.size() &&
                                   (std::isdigit(static_cast<unsigned char>(s[i + 1])) || s[i + 1] == '.'))) {
      // The first character is taken whatever it is: a leading '+' is no word character,
      // and scanning from it would make an empty token that never advances.
      std::size_t end = i + 1;
      while (end < s.size() && word_char(static_cast<unsigned char>(s[end]))) ++end;
      // An exponent sign belongs to the number: 1e-3.
      while (end < s.size() && (s[end] == '+' || s[end] == '-') && (s[end - 1] == 'e' || s[end - 1] == 'E')) {
        ++end;
        while (end < s.size() && word_char(static_cast<unsigned char>(s[end]))) ++end;
      }
      t.type = Token::Type::kNumber;
      t.text = s.substr(i, end - i);
      char* parsed_end = nullptr;
      t.number = std::strtod(t.text.c_str(), &parsed_end);
      if (parsed_end != t.text.c_str() + t.text.size() || !std::isfinite(t.number)) {
        fail(t.pos, "expected a number, found " + quote_text(t.text));
      }
      i = end;
    } else if (std::isalpha(c) || c == '_') {
      std::size_t end = i;
      while (end < s.size() && word_char(static_cast<unsigned char>(s[end]))) ++end;
      t.type = Token::Type::kWord;
      t.text = s.substr(i, end - i);
      i = end;
    } else {
      fail(i + 1, "unexpected character " + (c < 0x20 || c == 0x7f ? "with code " + std::to_string(c)
                                                                   : quote_text(std::string(1, s[i]))));
    }
    tokens.push_back(std::move(t));
  }
  Token end;
  end.type = Token::Type::kEnd;
  end.pos = s.size() + 1;
  tokens.push_back(end);
  return tokens;
}

bool is_keyword(const Token& t, const char* word) {
  return t.type == Token::Type::kWord && fold(t.text) == word;
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, const ParseLimits& limits)
      : tokens_(std::move(tokens)), limits_(limits) {}

  NodePtr parse() {
    NodePtr root = parse_or(0);
    if (peek().type != Token::Type::kEnd) {
      fail(peek().pos, "expected AND, OR or the end of the filter, found " + describe(peek()));
    }
    return root;
  }

 private:
  const Token& peek() const { return tokens_[at_]; }
  const Token& next() { return tokens_[at_++]; }

  void count_term(std::size_t pos) {
    if (++terms_ > limits_.max_terms) {
      fail(pos, "too many terms: the limit is " + std::to_string(limits_.max_terms) +
                    " comparisons and listed values");
    }
  }

  NodePtr combine(Node::Kind kind, std::vector<NodePtr> parts) {
    if (parts.size() == 1) return parts.front();
    auto node = std::make_shared<Node>();
    node->kind = kind;
    node->children = std::move(parts);
    return node;
  }

  NodePtr parse_or(std::size_t depth) {
    std::vector<NodePtr> parts{parse_and(depth)};
    while (is_keyword(peek(), "or")) {
      next();
      parts.push_back(parse_and(depth));
    }
    return combine(Node::Kind::kOr, std::move(parts));
  }

  NodePtr parse_and(std::size_t depth) {
    std::vector<NodePtr> parts{parse_unary(depth)};
    while (is_keyword(peek(), "and")) {
      next();
      parts.push_back(parse_unary(depth));
    }
    return combine(Node::Kind::kAnd, std::move(parts));
  }

  NodePtr parse_unary(std::size_t depth) {
    const Token& t = peek();
    if (depth + 1 > limits_.max_depth) {
      fail(t.pos, "nested too deeply: the limit is " + std::to_string(limits_.max_depth) + " levels");
    }
    if (is_keyword(t, "not")) {
      next();
      auto node = std::make_shared<Node>();
      node->kind = Node::Kind::kNot;
      node->children.push_back(parse_unary(depth + 1));
      return node;
    }
    if (t.type == Token::Type::kLParen) {
      next();
      NodePtr inner = parse_or(depth + 1);
      if (peek().type != Token::Type::kRParen) {
        fail(peek().pos, "expected \")\" to close the \"(\" at position " + std::to_string(t.pos) +
                             ", found " + describe(peek()));
      }
      next();
      return inner;
    }
    return parse_comparison();
  }

  NodePtr parse_comparison() {
    const Token& field_token = next();
    if (field_token.type != Token::Type::kWord || is_keyword(field_token, "and") ||
        is_keyword(field_token, "or")) {
      fail(field_token.pos, std::string("expected a field (") + kFieldList + "), NOT or \"(\", found " +
                                describe(field_token));
    }
    std::string field = fold(field_token.text);
    if (field.compare(0, 11, "attributes.") == 0) {
      if (field.size() == 11) fail(field_token.pos + 11, "expected an attribute name after \"attributes.\"");
    } else if (!is_text_field(field) && !is_number_field(field) && field != "in_stock") {
      fail(field_token.pos, "unknown field " + quote_text(field_token.text) + "; expected " + kFieldList);
    }
    count_term(field_token.pos);
    auto node = std::make_shared<Node>();
    node->field = field;
    node->kind = field == "in_stock"    ? Node::Kind::kInStock
                 : is_text_field(field) ? Node::Kind::kText
                                        : Node::Kind::kNumber;

    const Token& op_token = peek();
    if (node->kind == Node::Kind::kInStock) {
      if (op_token.type != Token::Type::kOp) return node;  // bare in_stock
      next();
      if (op_token.text != "=" && op_token.text != "!=") {
        fail(op_token.pos,
             quote_text(op_token.text) + " does not apply to in_stock; use = or != with TRUE or FALSE");
      }
      const Token& v = next();
      if (!is_keyword(v, "true") && !is_keyword(v, "false")) {
        fail(v.pos, "expected TRUE or FALSE after " + quote_text(op_token.text) + ", found " + describe(v));
      }
      node->flag = is_keyword(v, "true") == (op_token.text == "=");
      return node;
    }

    if (is_keyword(op_token, "in") || is_keyword(op_token, "not")) {
      next();
      node->op = Op::kIn;
      if (is_keyword(op_token, "not")) {
        if (!is_keyword(peek(), "in")) fail(peek().pos, "expected IN after NOT, found " + describe(peek()));
        next();
        node->op = Op::kNotIn;
      }
      if (peek().type != Token::Type::kLParen) {
        fail(peek().pos, "expected \"(\" to start the list after IN, found " + describe(peek()));
      }
      next();
      for (;;) {
        read_value(*node, "in the list after IN");
        count_term(tokens_[at_ - 1].pos);
        const Token& sep = next();
        if (sep.type == Token::Type::kRParen) break;
        if (sep.type != Token::Type::kComma) {
          fail(sep.pos, "expected \",\" or \")\" in the list after IN, found " + describe(sep));
        }
      }
      return node;
    }
    if (op_token.type != Token::Type::kOp) {
      fail(op_token.pos, "expected an operator (=, !=, <, <=, >, >=, IN, NOT IN) after " + field_token.text +
                             ", found " + describe(op_token));
    }
    next();
    const std::string& o = op_token.text;
    node->op = o == "="    ? Op::kEq
               : o == "!=" ? Op::kNe
               : o == "<"  ? Op::kLt
               : o == "<=" ? Op::kLe
               : o == ">"  ? Op::kGt
                           : Op::kGe;
    if (node->kind == Node::Kind::kText && node->op != Op::kEq && node->op != Op::kNe) {
      fail(op_token.pos,
           quote_text(o) + " does not apply to the text field " + field + "; use =, !=, IN or NOT IN");
    }
    read_value(*node, "after " + quote_text(o));
    return node;
  }

  void read_value(Node& node, const std::string& where) {
    const Token& v = next();
    if (node.kind == Node::Kind::kText) {
      if (v.type != Token::Type::kString) {
        fail(v.pos,
             "expected a quoted string " + where + " (" + node.field + " is text), found " + describe(v));
      }
      node.texts.push_back(v.text);
    } else {
      if (v.type != Token::Type::kNumber) {
        fail(v.pos, "expected a number " + where + " (" + node.field + " is a number), found " + describe(v));
      }
      node.numbers.push_back(v.number);
    }
  }

  std::vector<Token> tokens_;
  const ParseLimits& limits_;
  std::size_t at_ = 0;
  std::size_t terms_ = 0;
};

std::string number_text(double v) {
  std::ostringstream out;
  out.precision(17);
  out << v;
  return out.str();
}

std::string string_literal(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

void write(const Node& n, std::string& out, bool nested) {
  switch (n.kind) {
    case Node::Kind::kAnd:
    case Node::Kind::kOr: {
      if (nested) out += "(";
      for (std::size_t i = 0; i < n.children.size(); ++i) {
        if (i) out += n.kind == Node::Kind::kAnd ? " AND " : " OR ";
        write(*n.children[i], out, true);
      }
      if (nested) out += ")";
      return;
    }
    case Node::Kind::kNot:
      out += "NOT ";
      write(*n.children.front(), out, true);
      return;
    case Node::Kind::kInStock:
      out += n.flag ? "in_stock = TRUE" : "in_stock = FALSE";
      return;
    case Node::Kind::kText:
    case Node::Kind::kNumber: {
      out += n.field + " " + op_text(n.op) + " ";
      const bool list = n.op == Op::kIn || n.op == Op::kNotIn;
      if (list) out += "(";
      const std::size_t count = n.kind == Node::Kind::kText ? n.texts.size() : n.numbers.size();
      for (std::size_t i = 0; i < count; ++i) {
        if (i) out += ", ";
        out += n.kind == Node::Kind::kText ? string_literal(n.texts[i]) : number_text(n.numbers[i]);
      }
      if (list) out += ")";
      return;
    }
  }
}

bool compare(double a, Op op, const std::vector<double>& values) {
  switch (op) {
    case Op::kEq:
      return a == values.front();
    case Op::kNe:
      return a != values.front();
    case Op::kLt:
      return a < values.front();
    case Op::kLe:
      return a <= values.front();
    case Op::kGt:
      return a > values.front();
    case Op::kGe:
      return a >= values.front();
    case Op::kIn:
    case Op::kNotIn: {
      bool found = std::find(values.begin(), values.end(), a) != values.end();
      return op == Op::kIn ? found : !found;
    }
  }
  return false;
}

double number_of(const catalog::Product& p, const std::string& field) {
  if (field == "price") return p.price;
  if (field == "stock") return static_cast<double>(p.stock);
  if (field == "rating") return p.rating;
  return static_cast<double>(p.rating_count);
}

std::string text_of(const catalog::Product& p, const std::string& field) {
  if (field == "category") return p.category;
  if (field == "brand") return p.brand;
  if (field == "group_id") return p.group_id;
  const std::string key = field.substr(11);
  for (const auto& [k, v] : p.attributes) {
    if (fold(k) == key) return v;
  }
  return "";
}

bool eval_product(const Node& n, const catalog::Product& p) {
  switch (n.kind) {
    case Node::Kind::kAnd:
      return std::all_of(n.children.begin(), n.children.end(),
                         [&](const NodePtr& c) { return eval_product(*c, p); });
    case Node::Kind::kOr:
      return std::any_of(n.children.begin(), n.children.end(),
                         [&](const NodePtr& c) { return eval_product(*c, p); });
    case Node::Kind::kNot:
      return !eval_product(*n.children.front(), p);
    case Node::Kind::kInStock:
      return (p.stock > 0) == n.flag;
    case Node::Kind::kNumber:
      return compare(number_of(p, n.field), n.op, n.numbers);
    case Node::Kind::kText: {
      const std::string value = fold(text_of(p, n.field));
      bool found = false;
      for (const auto& t : n.texts) found = found || (!value.empty() && fold(t) == value);
      return (n.op == Op::kEq || n.op == Op::kIn) ? found : !found;
    }
  }
  return false;
}

template <typename T>
void compare_column(const std::vector<T>& column, Op op, const std::vector<double>& values,
                    std::vector<std::uint8_t>& out) {
  const std::size_t n = column.size();
  const double v = values.front();
  switch (op) {
    case Op::kEq:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<double>(column[i]) == v;
      return;
    case Op::kNe:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<double>(column[i]) != v;
      return;
    case Op::kLt:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<double>(column[i]) < v;
      return;
    case Op::kLe:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<double>(column[i]) <= v;
      return;
    case Op::kGt:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<double>(column[i]) > v;
      return;
    case Op::kGe:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<double>(column[i]) >= v;
      return;
    case Op::kIn:
    case Op::kNotIn:
      for (std::size_t i = 0; i < n; ++i) out[i] = compare(static_cast<double>(column[i]), op, values);
      return;
  }
}

}  // namespace

std::string fold(const std::string& text) {
  std::string out = text;
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

Filter Filter::parse(const std::string& text, const ParseLimits& limits) {
  if (text.size() > limits.max_length) {
    throw Error(ErrorKind::kInvalidInput, "filter: the filter is " + std::to_string(text.size()) +
                                              " bytes; the limit is " + std::to_string(limits.max_length));
  }
  auto tokens = tokenize(text);
  if (tokens.size() == 1) fail(1, std::string("the filter is empty; expected a field (") + kFieldList + ")");
  Filter filter;
  filter.root_ = Parser(std::move(tokens), limits).parse();
  return filter;
}

std::string Filter::to_string() const {
  std::string out;
  write(*root_, out, false);
  return out;
}

bool Filter::matches(const catalog::Product& product) const { return eval_product(*root_, product); }

std::vector<std::uint8_t> Filter::evaluate(const Table& table) const {
  const std::size_t rows = table.rows();
  // Evaluated bottom-up, one column at a time: each node yields one byte per row.
  struct Eval {
    const Table& t;
    std::size_t rows;
    std::vector<std::uint8_t> run(const Node& n) const {
      std::vector<std::uint8_t> out(rows, 0);
      switch (n.kind) {
        case Node::Kind::kAnd:
        case Node::Kind::kOr: {
          out = run(*n.children.front());
          for (std::size_t c = 1; c < n.children.size(); ++c) {
            auto other = run(*n.children[c]);
            if (n.kind == Node::Kind::kAnd) {
              for (std::size_t i = 0; i < rows; ++i) out[i] &= other[i];
            } else {
              for (std::size_t i = 0; i < rows; ++i) out[i] |= other[i];
            }
          }
          return out;
        }
        case Node::Kind::kNot:
          out = run(*n.children.front());
          for (auto& v : out) v ^= 1;
          return out;
        case Node::Kind::kInStock:
          for (std::size_t i = 0; i < rows; ++i) out[i] = (t.stock_[i] > 0) == n.flag;
          return out;
        case Node::Kind::kNumber:
          if (n.field == "price") {
            compare_column(t.price_, n.op, n.numbers, out);
          } else if (n.field == "rating") {
            compare_column(t.rating_, n.op, n.numbers, out);
          } else if (n.field == "stock") {
            compare_column(t.stock_, n.op, n.numbers, out);
          } else {
            compare_column(t.rating_count_, n.op, n.numbers, out);
          }
          return out;
        case Node::Kind::kText: {
          const bool positive = n.op == Op::kEq || n.op == Op::kIn;
          const Table::TextColumn* column = t.text_column(n.field);
          std::vector<std::uint8_t> wanted(column ? column->names.size() : 1, 0);
          if (column) {
            for (const auto& text : n.texts) {
              if (auto code = column->find(text)) wanted[*code] = 1;
            }
          }
          wanted[0] = 0;  // empty or absent never equals a value
          if (!column) {
            std::fill(out.begin(), out.end(), positive ? 0 : 1);
            return out;
          }
          for (std::size_t i = 0; i < rows; ++i) {
            const std::uint32_t code = i < column->codes.size() ? column->codes[i] : 0;
            out[i] = positive ? wanted[code] : static_cast<std::uint8_t>(wanted[code] ^ 1);
          }
          return out;
        }
      }
      return out;
    }
  };
  auto out = Eval{table, rows}.run(*root_);
  for (std::size_t i = 0; i < rows; ++i) out[i] &= table.alive_[i];
  return out;
}

std::uint32_t Table::TextColumn::code_of(const std::string& value) {
  if (value.empty()) return 0;
  auto [it, inserted] = by_folded.emplace(fold(value), static_cast<std::uint32_t>(names.size()));
  if (inserted) names.push_back(value);
  return it->second;
}

std::optional<std::uint32_t> Table::TextColumn::find(const std::string& value) const {
  auto it = by_folded.find(fold(value));
  if (it == by_folded.end()) return std::nullopt;
  return it->second;
}

Table::Table() : rows_by_id_(std::make_shared<std::unordered_map<std::string, std::uint32_t>>()) {}

std::optional<std::uint32_t> Table::row_of(const std::string& id) const {
  auto it = rows_by_id_->find(id);
  if (it == rows_by_id_->end()) return std::nullopt;
  return it->second;
}

std::uint32_t Table::upsert(const catalog::Product& p) {
  std::uint32_t row;
  if (auto existing = row_of(p.id)) {
    row = *existing;
    if (!alive_[row]) {
      alive_[row] = 1;
      ++live_count_;
    } else {
      leave_family(row);
    }
  } else {
    row = static_cast<std::uint32_t>(ids_.size());
    if (rows_by_id_.use_count() > 1) {
      rows_by_id_ = std::make_shared<std::unordered_map<std::string, std::uint32_t>>(*rows_by_id_);
    }
    rows_by_id_->emplace(p.id, row);
    ids_.push_back(p.id);
    alive_.push_back(1);
    ++live_count_;
    price_.push_back(0);
    rating_.push_back(0);
    stock_.push_back(0);
    rating_count_.push_back(0);
    images_.push_back(0);
    for (TextColumn* c : {&category_, &brand_, &group_, &currency_}) c->codes.push_back(0);
    for (auto& [key, column] : attributes_) column.codes.push_back(0);
  }
  price_[row] = p.price;
  rating_[row] = p.rating;
  stock_[row] = p.stock;
  rating_count_[row] = p.rating_count;
  images_[row] = static_cast<std::uint32_t>(p.images.size());
  category_.codes[row] = category_.code_of(p.category);
  brand_.codes[row] = brand_.code_of(p.brand);
  group_.codes[row] = group_.code_of(p.group_id);
  currency_.codes[row] = currency_.code_of(p.currency);
  join_family(row);
  for (auto& [key, column] : attributes_) column.codes[row] = 0;
  for (const auto& [key, value] : p.attributes) {
    auto [it, inserted] = attributes_.try_emplace(fold(key));
    if (inserted) it->second.codes.assign(ids_.size(), 0);
    it->second.codes[row] = it->second.code_of(value);
  }
  return row;
}

bool Table::remove(const std::string& id) {
  auto row = row_of(id);
  if (!row || !alive_[*row]) return false;
  leave_family(*row);
  alive_[*row] = 0;
  --live_count_;
  return true;
}

void Table::leave_family(std::uint32_t row) {
  const std::uint32_t group = group_.codes[row];
  if (group == 0 || group >= family_rows_.size()) return;
  auto& rows = family_rows_[group];
  auto it = std::lower_bound(rows.begin(), rows.end(), row);
  if (it != rows.end() && *it == row) rows.erase(it);
}

void Table::join_family(std::uint32_t row) {
  const std::uint32_t group = group_.codes[row];
  if (group == 0) return;
  if (group >= family_rows_.size()) family_rows_.resize(group + 1);
  auto& rows = family_rows_[group];
  auto it = std::lower_bound(rows.begin(), rows.end(), row);
  if (it == rows.end() || *it != row) rows.insert(it, row);
}

std::vector<std::uint32_t> Table::family(std::uint32_t row) const {
  const std::uint32_t group = group_.codes[row];
  if (group == 0) return alive_[row] ? std::vector<std::uint32_t>{row} : std::vector<std::uint32_t>{};
  return group < family_rows_.size() ? family_rows_[group] : std::vector<std::uint32_t>{};
}

const std::string& Table::attribute(std::uint32_t row, const std::string& key) const {
  static const std::string kNone;
  auto it = attributes_.find(fold(key));
  if (it == attributes_.end()) return kNone;
  return it->second.names[it->second.codes[row]];
}

const Table::TextColumn* Table::text_column(const std::string& field) const {
  const std::string f = fold(field);
  if (f == "category") return &category_;
  if (f == "brand") return &brand_;
  if (f == "group_id") return &group_;
  if (f.compare(0, 11, "attributes.") != 0) return nullptr;
  auto it = attributes_.find(f.substr(11));
  return it == attributes_.end() ? nullptr : &it->second;
}

namespace {

std::vector<FacetValue> count_column(const Table::TextColumn* column, const std::vector<std::uint32_t>& rows,
                                     std::size_t max_values) {
  std::vector<FacetValue> out;
  if (!column) return out;
  std::vector<std::size_t> counts(column->names.size(), 0);
  for (auto row : rows) ++counts[column->codes[row]];
  for (std::size_t code = 1; code < counts.size(); ++code) {
    if (counts[code]) out.push_back({column->names[code], counts[code]});
  }
  std::sort(out.begin(), out.end(), [](const FacetValue& a, const FacetValue& b) {
    return a.count != b.count ? a.count > b.count : a.value < b.value;
  });
  if (out.size() > max_values) out.resize(max_values);
  return out;
}

}  // namespace

Facets count_facets(const Table& table, const std::vector<std::uint32_t>& rows, const FacetOptions& options) {
  std::vector<std::uint32_t> unique;
  unique.reserve(rows.size());
  for (auto row : rows) {
    if (row < table.rows() && table.alive(row)) unique.push_back(row);
  }
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());

  Facets facets;
  facets.category = count_column(table.text_column("category"), unique, options.max_values);
  facets.brand = count_column(table.text_column("brand"), unique, options.max_values);
  for (const auto& key : options.attributes) {
    facets.attributes[key] = count_column(table.text_column("attributes." + key), unique, options.max_values);
  }
  double from = 0;
  for (double edge : options.price_edges) {
    facets.price.push_back({from, edge, 0});
    from = edge;
  }
  facets.price.push_back({from, std::nullopt, 0});
  for (auto row : unique) {
    const double price = table.price(row);
    auto it = std::upper_bound(options.price_edges.begin(), options.price_edges.end(), price);
    ++facets.price[static_cast<std::size_t>(it - options.price_edges.begin())].count;
  }
  return facets;
}

namespace {

nlohmann::json values_json(const std::vector<FacetValue>& values) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& v : values) out.push_back({{"value", v.value}, {"count", v.count}});
  return out;
}

}  // namespace

std::string facets_json(const Facets& facets) {
  nlohmann::json price = nlohmann::json::array();
  for (const auto& b : facets.price) {
    price.push_back({{"from", b.from},
                     {"to", b.to ? nlohmann::json(*b.to) : nlohmann::json(nullptr)},
                     {"count", b.count}});
  }
  nlohmann::json out{{"category", values_json(facets.category)}, {"brand", values_json(facets.brand)}};
  for (const auto& [key, values] : facets.attributes) out[key] = values_json(values);
  out["price"] = std::move(price);
  return out.dump();
}

}  // namespace lookalike::filter
