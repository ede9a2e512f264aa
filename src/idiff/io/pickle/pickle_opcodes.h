// The pickle opcodes idiff reads or writes (Lib/pickletools.py has them all, with the
// protocol that introduced each), and every opcode's name for error messages.
#pragma once

#include <cstdint>

namespace idiff::pickle_op {

enum : uint8_t {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kNone = 'N',
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kBinInt = 'J',
  kBinInt1 = 'K',
  kBinInt2 = 'M',
  kLong1 = 0x8a,
  kBinFloat = 'G',
  kBinUnicode = 'X',
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kEmptyList = ']',
  kEmptyTuple = ')',
  kEmptyDict = '}',
  kList = 'l',
  kTuple = 't',
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kDict = 'd',
  kAppend = 'a',
  kAppends = 'e',
  kSetItem = 's',
  kSetItems = 'u',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kMemoize = 0x94,
  kBinGet = 'h',
  kLongBinGet = 'j',
  kGlobal = 'c',
  kStackGlobal = 0x93,
  kBinPersId = 'Q',
  kReduce = 'R',
  kBuild = 'b',
  kProto = 0x80,
  kFrame = 0x95,
};

// "BINUNICODE", ...; nullptr for a byte that is no opcode.
const char* name(uint8_t op);

}  // namespace idiff::pickle_op
