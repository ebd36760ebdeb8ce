"""Which Neurosynth / NeuroQuery files exist, where they are, and their pinned checksums.

The file names and the pinned repository commits are those NiMARE 0.22.1 downloads
(``nimare/resources/database_file_manifest.json`` and ``nimare/extract``). Checksums were
computed from unchanged copies of the public files (see :data:`SHA256` and
:data:`GIT_BLOB_SHA1`); every file the fetchers can name has one, and a file without one is
never used.
"""

from __future__ import annotations

#: Raw-file base URLs (NiMARE's pinned commits of the public data repositories).
BASE_URLS = {
    "neurosynth": (
        "https://github.com/neurosynth/neurosynth-data/raw/"
        "209c33cd009d0b069398a802198b41b9c488b9b7/"
    ),
    "neuroquery": (
        "https://github.com/neuroquery/neuroquery_data/raw/"
        "4580f86267fb7c14ac1f601e298cbed898d79f2d/data/"
    ),
}

_LDA = [(f"LDA{k}", "abstract", "weight") for k in (50, 100, 200, 400)]
_NQ_SOURCES = ("abstract", "body", "keywords", "title")

#: (vocab, source, type) combinations available per database and version.
FEATURE_SETS: dict[str, dict[str, list[tuple[str, str, str]]]] = {
    "neurosynth": {
        "3": [("terms", "abstract", "tfidf")],
        "4": [("terms", "abstract", "tfidf")],
        "5": [("terms", "abstract", "tfidf")],
        "6": [("terms", "abstract", "tfidf"), *_LDA],
        "7": [("terms", "abstract", "tfidf"), *_LDA],
    },
    "neuroquery": {
        "1": [
            ("neuroquery6308", "combined", "tfidf"),
            *[("neuroquery7547", s, "count") for s in _NQ_SOURCES],
            *[("neuroquery156521", s, "count") for s in _NQ_SOURCES],
        ]
    },
}

#: SHA-256 of every file whose content we hold a copy of (the pinned commits' files, unchanged;
#: the Neurosynth v7 and NeuroQuery v1 files in ``../shared/data`` give the same digests).
SHA256 = {
    # Neurosynth version 3
    "data-neurosynth_version-3_coordinates.tsv.gz": (
        "702484a7e810d0612dbac26628a0b07fea90e9da9cf8978ac9360b52f22e15fa"
    ),
    "data-neurosynth_version-3_metadata.tsv.gz": (
        "5d6342c684ca0d028917720606a2d9cadf72d32e3066300afdc3421f25ddcf8a"
    ),
    "data-neurosynth_version-3_vocab-terms_vocabulary.txt": (
        "6517876680bc0a764a0c36fa9cc6219f59cdebe9659ac938b6792f7689fc2324"
    ),
    # Neurosynth version 4
    "data-neurosynth_version-4_coordinates.tsv.gz": (
        "b1eeec7f522f4556ca052c7302ef10bb65523868607b3668557c7db9a44efbb4"
    ),
    "data-neurosynth_version-4_metadata.tsv.gz": (
        "e0db6574e778c3b0139c7668e301a2b8fc24d572eefd12576999c4be180c185c"
    ),
    "data-neurosynth_version-4_vocab-terms_vocabulary.txt": (
        "3cd2af6a50af65669d9c88becb1b3c656e8901036c3181436ab362d262439926"
    ),
    # Neurosynth version 5
    "data-neurosynth_version-5_coordinates.tsv.gz": (
        "304dc30db5862670f5e0e98a2d7ae25a6c86302727e9bb7d8a3f66edc756e830"
    ),
    "data-neurosynth_version-5_metadata.tsv.gz": (
        "f9fe99b149cb39419e0e9b67e19e166b97c88bf88561067da74a76b8fba179f3"
    ),
    "data-neurosynth_version-5_vocab-terms_vocabulary.txt": (
        "33b00e729d6dfeabcae91b2ccd91731e182512bae14b9bd65802aeb5735ac01c"
    ),
    # Neurosynth version 6
    "data-neurosynth_version-6_coordinates.tsv.gz": (
        "7eeb64ebdf9411c9a04cd6d851fa63c568197e92578780e25408459d17c4e572"
    ),
    "data-neurosynth_version-6_metadata.tsv.gz": (
        "76e086f9c89abd35df63d2b0ea9538d1784a5b0c9eb7794203e8130274df947b"
    ),
    "data-neurosynth_version-6_vocab-terms_vocabulary.txt": (
        "fd0ed3c1359a685e629f8f442112fe4eab23f746da2fd08399dc4b938b2b0dd2"
    ),
    "data-neurosynth_version-6_vocab-LDA50_source-abstract_type-weight_features.npz": (
        "ea548fbdcf2317fc2766a7e70c3fed4d536ec8701b2d76a7c672302f2a5f5ab2"
    ),
    "data-neurosynth_version-6_vocab-LDA50_vocabulary.txt": (
        "6ad6100c276d74c77bb7b56e87a4ddfd393daddcb3c23a60dfb06c7b6d6ecd09"
    ),
    "data-neurosynth_version-6_vocab-LDA50_keys.tsv": (
        "71767f177880f51923e33774813a3c3bb4ffdaddbbc91ac51295e906e1e82aa2"
    ),
    "data-neurosynth_version-6_vocab-LDA50_metadata.json": (
        "4b70f0a9516c824e5b23d4a391b0cb6ecc36e77b1dbd87385d6a5ca83d01a25e"
    ),
    "data-neurosynth_version-6_vocab-LDA100_source-abstract_type-weight_features.npz": (
        "99459eb3e2c048e7e50cd8d49ec3e4000819f4849f6f2266f2d86a4a7714f70d"
    ),
    "data-neurosynth_version-6_vocab-LDA100_vocabulary.txt": (
        "d57b63c5e462931540ec2559345330f2444597adfe545e226edd3e2d7e24672f"
    ),
    "data-neurosynth_version-6_vocab-LDA100_keys.tsv": (
        "a34184985e28895aee07b3efc7fcf64504d19983df15419b152e954b61764bc2"
    ),
    "data-neurosynth_version-6_vocab-LDA100_metadata.json": (
        "ff31c54356808a7edbf76a9a50bd963c5d957112bc3392fcef29438f1bd35d89"
    ),
    "data-neurosynth_version-6_vocab-LDA200_vocabulary.txt": (
        "5f692c700262cf86ee64a131b82b8293a47f60659347b038fe526d08022308bb"
    ),
    "data-neurosynth_version-6_vocab-LDA200_keys.tsv": (
        "b3ff2cffbdb0b2e0c93f98e1441392bcd1b225f30abda70bd6ae1b52e32b2d68"
    ),
    "data-neurosynth_version-6_vocab-LDA200_metadata.json": (
        "98d3aed3a7fc8cf295ef2ef74ab91b66083d89f3cf4b315fb9392d7ab70eceb5"
    ),
    "data-neurosynth_version-6_vocab-LDA400_vocabulary.txt": (
        "29f2deaac293843569e9ae0dc09bda8e86d67313dd3f4248e94f0cf3f9b1c11c"
    ),
    "data-neurosynth_version-6_vocab-LDA400_keys.tsv": (
        "ebad53e67e962ede5e20d57ff47e0d0f94388b6746326103ba8ab09add42c247"
    ),
    "data-neurosynth_version-6_vocab-LDA400_metadata.json": (
        "f34b52cd490d633f08f56e116f91144ce60ac043d166f73f0b6b3e6b5f365a31"
    ),
    # Neurosynth version 7
    "data-neurosynth_version-7_coordinates.tsv.gz": (
        "17135be3e08a0ab045896c77217e8463086543a0817d52a6a88c8e32c1161616"
    ),
    "data-neurosynth_version-7_metadata.tsv.gz": (
        "8acde7de2a14ee2a12b406e50a8805e83288b0bc78924ddb36879d496dfb757b"
    ),
    "data-neurosynth_version-7_vocab-terms_vocabulary.txt": (
        "71c1858c5eb1bcc79854198bbca234569731efdc382c6205a9e46495379614af"
    ),
    "data-neurosynth_version-7_vocab-LDA50_source-abstract_type-weight_features.npz": (
        "dff7606079404b8496be4baca35c0d261e91d4ac6ff5c5595e1ef519e598a571"
    ),
    "data-neurosynth_version-7_vocab-LDA50_vocabulary.txt": (
        "57a5fba4d3ee97cfcbf73a13d0631a1d9709a53c5a1fdf6d173f04ac8bb8f302"
    ),
    "data-neurosynth_version-7_vocab-LDA50_keys.tsv": (
        "7d2c872af784eb0bb96e7f2d63ba5c699cd002d3f58baa60353d9450c9431bac"
    ),
    "data-neurosynth_version-7_vocab-LDA50_metadata.json": (
        "d803b63c1b9afa4e65503b07c087f16304147cb236c8d82e7d79e4e2339e308f"
    ),
    "data-neurosynth_version-7_vocab-LDA100_vocabulary.txt": (
        "f19406e73737b36e904153aac3a9cf1dd82cece535b25f8919ee9e60ff05ea30"
    ),
    "data-neurosynth_version-7_vocab-LDA100_keys.tsv": (
        "cd17544c65669d5857fba534ede3062f9ec37d233c3871ffbb7930f1c4e5b1db"
    ),
    "data-neurosynth_version-7_vocab-LDA100_metadata.json": (
        "385f1d0c8ef0561ef3be421789be5075c20af75fb1a53d248ba7e6a3d7a69bac"
    ),
    "data-neurosynth_version-7_vocab-LDA200_vocabulary.txt": (
        "9d1e5eb59ff10a366247a2d4791c283e591b633d3489381bb1043b7c03223576"
    ),
    "data-neurosynth_version-7_vocab-LDA200_keys.tsv": (
        "d5b3485987ebcd9d3f1553ed6e970e10c064c888b718b07343c38721f4730ab6"
    ),
    "data-neurosynth_version-7_vocab-LDA200_metadata.json": (
        "fc4e5a3d6aab7a1692b5c244f3897ddf0e391e98556ea328d323912032f45d85"
    ),
    "data-neurosynth_version-7_vocab-LDA400_vocabulary.txt": (
        "483b4c96dc06e4582ff059b9059d69c922e1900039fdeb47cfea430d330554d4"
    ),
    "data-neurosynth_version-7_vocab-LDA400_keys.tsv": (
        "b4adb2250e69ab5bb3f10740605755420459034a522f9db34a1da3ae42b95bbe"
    ),
    "data-neurosynth_version-7_vocab-LDA400_metadata.json": (
        "f8ce8f3ff7f452af4ccb91d3a91cc993c790907c29f2dd871e3a8b586fe682c5"
    ),
    # NeuroQuery version 1
    "data-neuroquery_version-1_coordinates.tsv.gz": (
        "b97cf50346dc8a6f78b3c02c8a19680679d7dbdf35f760a1032e46c2cad3666c"
    ),
    "data-neuroquery_version-1_metadata.tsv.gz": (
        "d84d2c7b2e2ca1692381419833fde043fb42d279014104c3c957feeeece140ea"
    ),
    "data-neuroquery_version-1_vocab-neuroquery6308_vocabulary.txt": (
        "7b8cdf1e9b7eaab549d28434c07894f3115ec8e0ff7e0bdf69c0b16d72ba81fe"
    ),
    "data-neuroquery_version-1_vocab-neuroquery7547_source-abstract_type-count_features.npz": (
        "79c38b2515a316b711eef1ef1737ba57ce720d79d8506b7a08da6639418cf60a"
    ),
    "data-neuroquery_version-1_vocab-neuroquery7547_vocabulary.txt": (
        "ae4a13380451797735d3df142fb8b4b3792056fbf79471454aa40e12bec7717b"
    ),
    "data-neuroquery_version-1_vocab-neuroquery7547_source-keywords_type-count_features.npz": (
        "01c51de4b0f58194725c0c160e529c1c59cd812b83e51a693924be824f0e9c1b"
    ),
    "data-neuroquery_version-1_vocab-neuroquery7547_source-title_type-count_features.npz": (
        "c8243762f0f4c705c7ec60246c25e36785f0ea555dc914f85ede08a623afec74"
    ),
    "data-neuroquery_version-1_vocab-neuroquery156521_source-abstract_type-count_features.npz": (
        "1afb653a7c638377dae3ac9785e0e7ba04d62d89ecbd4c2b2dee8514365138c8"
    ),
    "data-neuroquery_version-1_vocab-neuroquery156521_vocabulary.txt": (
        "54a768ac2cd266f38a3010a20fd8b10abb107677776c8bda7060c8f9a4517793"
    ),
    "data-neuroquery_version-1_vocab-neuroquery156521_source-keywords_type-count_features.npz": (
        "dcdef30aa83e794cde4ff04a554d76446ca1599f1c304eb45286ad201479a2e1"
    ),
    "data-neuroquery_version-1_vocab-neuroquery156521_source-title_type-count_features.npz": (
        "ce0f1aa8453531bbe9f9132ddc645648a9c59edac5583bb8f29a4255e74bdf31"
    ),
}

#: Files too large for our copy of the repositories (their content was not at hand to hash):
#: pinned by their git blob id in the pinned commit's tree, ``sha1(b"blob <size>\0" + content)``,
#: which is exactly the content GitHub serves at ``<base>/raw/<commit>/<name>``.
GIT_BLOB_SHA1 = {
    "data-neurosynth_version-3_vocab-terms_source-abstract_type-tfidf_features.npz": (
        "fc96141c78b455d0e737677711ecd08ef7c1adf1"
    ),
    "data-neurosynth_version-4_vocab-terms_source-abstract_type-tfidf_features.npz": (
        "4b33cd7ca74b09218b60db6012796832e2d7f165"
    ),
    "data-neurosynth_version-5_vocab-terms_source-abstract_type-tfidf_features.npz": (
        "d5ab370c8d6da08fccdce1d6b6be30919a3d89df"
    ),
    "data-neurosynth_version-6_vocab-terms_source-abstract_type-tfidf_features.npz": (
        "b640dca5637a324667ecc5a9f91ce5cbfe1462b2"
    ),
    "data-neurosynth_version-6_vocab-LDA200_source-abstract_type-weight_features.npz": (
        "1dc6b2091e939707c3cbee97dc2fae67a1576ad0"
    ),
    "data-neurosynth_version-6_vocab-LDA400_source-abstract_type-weight_features.npz": (
        "3809f702ea6a311d703b6190e28c6366a5f1486e"
    ),
    "data-neurosynth_version-7_vocab-terms_source-abstract_type-tfidf_features.npz": (
        "fd742ebf2faa44124efb9c553a134ad1bfd419ae"
    ),
    "data-neurosynth_version-7_vocab-LDA100_source-abstract_type-weight_features.npz": (
        "40d349a398bc2eb0db7bfe7d153449eb4368f610"
    ),
    "data-neurosynth_version-7_vocab-LDA200_source-abstract_type-weight_features.npz": (
        "a26ffd334fa209a13d82d3966d6302968dc7ad3a"
    ),
    "data-neurosynth_version-7_vocab-LDA400_source-abstract_type-weight_features.npz": (
        "af5ccd29069649f4da7c62bed20962ba31e2ccc5"
    ),
    "data-neuroquery_version-1_vocab-neuroquery6308_source-combined_type-tfidf_features.npz": (
        "eee7596cb4d89754bb7651357db39f240cd51594"
    ),
    "data-neuroquery_version-1_vocab-neuroquery7547_source-body_type-count_features.npz": (
        "9d0066755b24ece4893ccff7b2ee4145a3c0972b"
    ),
    "data-neuroquery_version-1_vocab-neuroquery156521_source-body_type-count_features.npz": (
        "3c878041dc22a463baadfb2dfeda8e6b774798d7"
    ),
}


def checksum(name: str) -> tuple[str, str]:
    """The pinned checksum of a file: ``("sha256", hex)`` or ``("git-blob-sha1", hex)``.

    Raises
    ------
    KeyError
        No checksum is recorded for ``name`` (the fetchers refuse such a file).
    """
    if name in SHA256:
        return "sha256", SHA256[name]
    if name in GIT_BLOB_SHA1:
        return "git-blob-sha1", GIT_BLOB_SHA1[name]
    raise KeyError(f"no checksum is recorded for {name}")


def database_files(database: str, version: str, combos: list[tuple[str, str, str]]) -> dict:
    """File names (not paths) of one database version and the chosen feature sets.

    Returns
    -------
    dict
        ``{"coordinates": name, "metadata": name, "features": [{"features": name,
        "vocabulary": name, ...}]}`` (LDA sets also list ``keys`` and ``metadata``).
    """
    stem = f"data-{database}_version-{version}"
    features = []
    for vocab, source, type_ in combos:
        entry = {
            "features": f"{stem}_vocab-{vocab}_source-{source}_type-{type_}_features.npz",
            "vocabulary": f"{stem}_vocab-{vocab}_vocabulary.txt",
        }
        if vocab.startswith("LDA"):
            entry["keys"] = f"{stem}_vocab-{vocab}_keys.tsv"
            entry["metadata"] = f"{stem}_vocab-{vocab}_metadata.json"
        features.append(entry)
    return {
        "coordinates": f"{stem}_coordinates.tsv.gz",
        "metadata": f"{stem}_metadata.tsv.gz",
        "features": features,
    }
