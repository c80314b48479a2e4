# Finds libsentencepiece (and its trainer). Defines SentencePiece::SentencePiece and
# SentencePiece::Train. Debian ships a pkg-config file but no CMake config.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(PC_SENTENCEPIECE QUIET sentencepiece)
endif()
find_path(SentencePiece_INCLUDE_DIR sentencepiece_processor.h HINTS ${PC_SENTENCEPIECE_INCLUDE_DIRS})
find_library(SentencePiece_LIBRARY NAMES sentencepiece HINTS ${PC_SENTENCEPIECE_LIBRARY_DIRS})
find_library(SentencePiece_TRAIN_LIBRARY NAMES sentencepiece_train HINTS ${PC_SENTENCEPIECE_LIBRARY_DIRS})
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(SentencePiece REQUIRED_VARS SentencePiece_LIBRARY SentencePiece_INCLUDE_DIR)
# Note: libsentencepiece embeds its own protobuf and cannot be loaded into a process that
# also loads LibTorch's libprotobuf (start-up crash or version abort, whichever loads
# first). kvscope therefore reads tokenizer.model itself and uses this library only in a
# test binary without LibTorch, as the reference the reader is checked against.
if(SentencePiece_FOUND AND NOT TARGET SentencePiece::SentencePiece)
  add_library(SentencePiece::SentencePiece INTERFACE IMPORTED)
  set_target_properties(SentencePiece::SentencePiece PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${SentencePiece_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${SentencePiece_LIBRARY}")
  if(SentencePiece_TRAIN_LIBRARY)
    add_library(SentencePiece::Train INTERFACE IMPORTED)
    set_target_properties(SentencePiece::Train PROPERTIES
      INTERFACE_LINK_LIBRARIES "${SentencePiece_TRAIN_LIBRARY};SentencePiece::SentencePiece")
  endif()
endif()
mark_as_advanced(SentencePiece_INCLUDE_DIR SentencePiece_LIBRARY SentencePiece_TRAIN_LIBRARY)
