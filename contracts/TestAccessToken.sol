// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title TestAccessToken: a minimal ERC721 for tests and local chains only.
/// Holding one (balanceOf > 0) is what an environment's access list asks of a consumer.
/// The owner mints; holders transfer. No metadata, no approvals beyond the owner of a token.
contract TestAccessToken {
    string public name;
    string public symbol;
    address public owner;

    mapping(uint256 => address) private _owners;
    mapping(address => uint256) private _balances;

    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);

    constructor(string memory name_, string memory symbol_) {
        name = name_;
        symbol = symbol_;
        owner = msg.sender;
    }

    /// Only the deployer mints: an access token is the operator's to hand out.
    function mint(address to, uint256 tokenId) external {
        require(msg.sender == owner, "ERC721: only the owner mints");
        require(to != address(0), "ERC721: mint to the zero address");
        require(_owners[tokenId] == address(0), "ERC721: token already minted");
        _owners[tokenId] = to;
        _balances[to] += 1;
        emit Transfer(address(0), to, tokenId);
    }

    function balanceOf(address holder) external view returns (uint256) {
        require(holder != address(0), "ERC721: balance query for the zero address");
        return _balances[holder];
    }

    function ownerOf(uint256 tokenId) public view returns (address) {
        address holder = _owners[tokenId];
        require(holder != address(0), "ERC721: invalid token ID");
        return holder;
    }

    /// The token's holder moves it (no approvals: enough for tests).
    function transferFrom(address from, address to, uint256 tokenId) external {
        require(ownerOf(tokenId) == from, "ERC721: transfer from incorrect owner");
        require(msg.sender == from, "ERC721: caller is not the token owner");
        require(to != address(0), "ERC721: transfer to the zero address");
        _balances[from] -= 1;
        _balances[to] += 1;
        _owners[tokenId] = to;
        emit Transfer(from, to, tokenId);
    }
}
